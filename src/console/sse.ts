/**
 * A reader of a server-sent event stream (the console's live tail, src/console/tail.ts):
 * feed it the text as it arrives; it calls `onData` with each event's data lines joined
 * and its `event:` type (`message` when it has none).
 */
export function sseReader(onData: (data: string, type: string) => void): (chunk: string) => void {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const msg = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const lines = msg.split('\n');
      const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      const type = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
      if (data !== '') onData(data, type);
    }
  };
}
