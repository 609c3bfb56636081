"""Rule semantics shared by the services that evaluate conditions on JSON values
(the segmenter's segment rules, the journey's branches and property filters)."""
