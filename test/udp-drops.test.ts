import t from 'tap';
import { encodeTrack } from '../src/codec/encode.ts';
import { udpDrops } from '../src/ingest/udp-drops.ts';
import { Phone, startDaemon } from './support/daemon.ts';
import { daemonPids } from './support/hostile-net.ts';

/**
 * cabtrack_udp_kernel_drops_total: the `drops` column of /proc/net/udp{,6} for the daemon's port, parsed
 * from sample tables, then counted on a real daemon whose worker is stopped while datagrams arrive.
 */

// Port 5005 is 138D in hex. Two worker sockets on it (SO_REUSEPORT), other ports, a client socket
// connected *to* 5005 from another port (its remote address, not its local one, is 5005).
const UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  289: 00000000:138D 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 17930 2 0000000000000000 12        
  290: 00000000:138D 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 17931 2 0000000000000000 30        
  301: 0100007F:138E 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 17932 2 0000000000000000 999       
  410: 0100007F:A001 0100007F:138D 01 00000000:00000000 00:00000000 00000000  1000        0 17933 2 0000000000000000 5         
`;
const UDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  366: 00000000000000000000000000000000:138D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 20120 2 0000000000000000 7
  367: 00000000000000000000000001000000:0222 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 20121 2 0000000000000000 4
`;

t.test('sums the drops of the sockets bound to the port, IPv4 and IPv6', async (t) => {
  t.equal(udpDrops(UDP, 5005), 42, 'both worker sockets, not the client connected to 5005');
  t.equal(udpDrops(UDP, 5006), 999);
  t.equal(udpDrops(UDP6, 5005), 7);
  t.equal(udpDrops(UDP6, 0x222), 4);
  t.equal(udpDrops(UDP, 9999), 0, 'no socket on the port: none dropped');
});

t.test('a table it does not recognise gives null, not a guess', async (t) => {
  t.equal(udpDrops('', 5005), null, 'empty');
  const noDrops = UDP.replace('pointer drops', 'pointer').replace(/ \d+\s*$/gm, '');
  t.equal(udpDrops(noDrops, 5005), null, 'an old kernel without the column');
  t.equal(udpDrops('garbage\n1 2 3', 5005), null, 'not a table');
});

t.test('a line cut short or with a bad count is skipped', async (t) => {
  const bad = `${UDP}  500: 00000000:138D 00000000:0000 07\n  501: 00000000:138D 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0 x\n`;
  t.equal(udpDrops(bad, 5005), 42);
});

t.test('a live daemon counts what the kernel dropped while its worker was stopped', async (t) => {
  // One worker with a small buffer (the kernel doubles the 64 KiB asked): a few hundred datagrams fill it.
  const d = await startDaemon({ CABTRACK_WORKERS: '1', CABTRACK_RECV_BUFFER_BYTES: '65536' });
  t.teardown(() => d.stop());
  t.equal(await d.metric('cabtrack_udp_kernel_drops_total'), 0, 'none dropped at start');
  t.match((await d.get('/metrics', null)).text, /^cabtrack_udp_kernel_drops_total 0$/m, 'exported');

  const [worker] = daemonPids(d).workers;
  t.ok(worker, 'the worker pid');
  const phone = new Phone(d.udpPort);
  await phone.open();
  t.teardown(() => phone.close());
  const sent = 3000;
  const datagram = encodeTrack({ session: 0xdead1n, lat: 1_000_000, lon: 1_000_000, time: 1 });
  process.kill(worker!, 'SIGSTOP');
  try {
    for (let i = 0; i < sent; i++) await phone.send(datagram);
  } finally {
    process.kill(worker!, 'SIGCONT');
  }

  // Once the worker has read what its buffer held, every datagram is either received or dropped.
  let received = -1;
  await d.waitFor(async () => {
    const now = await d.metric('cabtrack_datagrams_received_total');
    const stable = now === received;
    received = now;
    return stable && now > 0;
  }, 'the buffer drained');
  const drops = await d.metric('cabtrack_udp_kernel_drops_total');
  t.ok(drops > 0, `the kernel dropped some (${drops})`);
  t.equal(received + drops, sent, 'received + kernel drops = sent');
});
