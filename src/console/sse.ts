/**
 * A reader of a server-sent event stream (the console's live tail, src/console/tail.ts):
 * feed it the text as it arrives; it calls `onData` with each event's data lines joined.
 */
export function sseReader(onData: (data: string) => void): (chunk: string) => void {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const msg = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = msg.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data !== '') onData(data);
    }
  };
}
