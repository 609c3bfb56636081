// Send every call type through an official Node SDK with its DEFAULT settings
// (only the write key and the host are given), flush, and print the message ids.
// Usage: node send.js <rudderstack|segment> <host> <writeKey> <tag>
'use strict';

const [sdk, host, writeKey, tag] = process.argv.slice(2);
const user = `sdk-${tag}`;

function calls(client) {
  const sent = [];
  const call = (method, message) => {
    const messageId = `${tag}-${sent.length}`;
    sent.push(messageId);
    client[method]({ ...message, messageId });
  };
  call('track', { userId: user, event: 'Order Completed', properties: { revenue: 9.5 } });
  call('identify', { userId: user, traits: { plan: 'pro', tag } });
  call('page', { userId: user, category: 'Docs', name: 'Pricing', properties: { path: '/p' } });
  call('screen', { userId: user, name: 'Home' });
  call('group', { userId: user, groupId: 'acme', traits: { seats: 3 } });
  call('alias', { previousId: `anon-${tag}`, userId: user });
  for (let i = 0; i < 20; i += 1) {
    call('track', { anonymousId: `anon-${tag}`, event: `Step ${i}` });
  }
  return sent;
}

async function main() {
  const errors = [];
  let sent;
  if (sdk === 'rudderstack') {
    const Analytics = require('@rudderstack/rudder-sdk-node');
    const client = new Analytics(writeKey, {
      dataPlaneUrl: host,
      errorHandler: (error) => errors.push(String(error)),
    });
    sent = calls(client);
    await client.flush();
  } else if (sdk === 'segment') {
    const { Analytics } = require('@segment/analytics-node');
    const client = new Analytics({ writeKey, host });
    client.on('error', (error) => errors.push(String(error && (error.reason || error.code || error))));
    sent = calls(client);
    await client.closeAndFlush();
  } else {
    throw new Error(`unknown sdk ${sdk}`);
  }
  process.stdout.write(JSON.stringify({ sent, errors }) + '\n');
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + '\n');
  process.exit(1);
});
