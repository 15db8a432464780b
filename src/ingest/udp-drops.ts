/**
 * Datagrams the kernel dropped before a worker read them, from the `drops` column of /proc/net/udp and
 * /proc/net/udp6: the one loss the daemon cannot count itself, since it never sees those datagrams
 * (a receive buffer that fills under a burst, or a worker stalled). Every worker's SO_REUSEPORT socket
 * is bound to the same port, so the sum over the sockets on that port is the daemon's loss.
 *
 * The tables look like this (one socket a line, addresses and ports in hex, drops in decimal last):
 *
 *    sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 *   289: 0100007F:138D 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 17930 2 0000000000000000 12
 *
 * The column has been there since Linux 2.6.27; a table without it gives null rather than a guess.
 * The kernel keeps it per socket in 32 bits, so a socket's count wraps at 2^32 and vanishes with the
 * socket (a worker that restarts starts again at 0): a counter reset, which Prometheus' rate() handles.
 */
export function udpDrops(table: string, port: number): number | null {
  const lines = table.split('\n');
  const header = lines[0]?.trim().split(/\s+/) ?? [];
  if (header[0] !== 'sl' || header[header.length - 1] !== 'drops') return null;
  let drops = 0;
  for (let i = 1; i < lines.length; i++) {
    const cols = lines[i]!.trim().split(/\s+/);
    // sl, local, remote, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode, ref, pointer, drops.
    if (cols.length < 13) continue;
    const local = cols[1]!;
    if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue;
    const n = Number(cols[cols.length - 1]);
    if (Number.isSafeInteger(n) && n >= 0) drops += n;
  }
  return drops;
}
