import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { Framer } from '../../src/codecs/framing/framer.js';
import { cut, frameAll, frameChunks } from '../helpers/frames.js';

const texts = (c: ReturnType<typeof frameAll>) => c.frames.map((f) => f.text);

describe('LF framing', () => {
  test('splits on LF, drops one trailing CR, NUL also ends a frame', () => {
    const c = frameAll('a\nb\r\nc\0d\n');
    expect(texts(c)).toEqual(['a', 'b', 'c', 'd']);
    expect(c.frames.every((f) => f.mode === 'lf' && !f.truncated)).toBe(true);
  });

  test('a CR inside a frame stays; only the one before LF goes', () => {
    expect(texts(frameAll('a\rb\r\r\n'))).toEqual(['a\rb\r']);
  });

  test('empty lines are skipped and counted', () => {
    const c = frameAll('\n\r\na\n\n');
    expect(texts(c)).toEqual(['a']);
    expect(c.notices.filter((n) => n === 'frame_empty')).toHaveLength(3);
  });

  test('the last frame without its terminator is emitted at end of stream', () => {
    expect(texts(frameAll('a\nlast'))).toEqual(['a', 'last']);
    expect(texts(frameAll('last\r'))).toEqual(['last']);
  });

  test('a line longer than maxFrameBytes is cut, flagged, the rest discarded and counted, and the next frame is separate', () => {
    const c = frameAll('0123456789ABCDEF\nnext\n', 10);
    expect(c.frames).toEqual([
      { text: '0123456789', mode: 'lf', truncated: true },
      { text: 'next', mode: 'lf', truncated: false },
    ]);
    expect(c.discarded).toBe(6);
  });

  test('a line of exactly maxFrameBytes is not truncated', () => {
    const c = frameAll('0123456789\n', 10);
    expect(c.frames).toEqual([{ text: '0123456789', mode: 'lf', truncated: false }]);
    expect(c.discarded).toBe(0);
  });

  test('an over-long line with no LF at all is cut and the rest discarded until the end', () => {
    const c = frameAll('x'.repeat(100), 10);
    expect(c.frames).toEqual([{ text: 'x'.repeat(10), mode: 'lf', truncated: true }]);
    expect(c.discarded).toBe(90);
  });
});

describe('octet counting (RFC 6587)', () => {
  test('LEN SP MSG frames, the MSG may hold LF, CR and NUL', () => {
    const c = frameAll('5 ab\ncd3 x\0y');
    expect(c.frames).toEqual([
      { text: 'ab\ncd', mode: 'octet', truncated: false },
      { text: 'x\0y', mode: 'octet', truncated: false },
    ]);
  });

  test('the count is in bytes, not characters', () => {
    const msg = Buffer.from('Задача', 'utf8'); // 12 bytes, 6 characters
    const c = frameChunks([Buffer.concat([Buffer.from(`${msg.length} `), msg, Buffer.from('2 ok')])]);
    expect(c.frames.map((f) => Buffer.from(f.text, 'latin1').toString('utf8'))).toEqual(['Задача', 'ok']);
  });

  test('a sender may switch between octet counting and LF per frame', () => {
    const c = frameAll('3 abcline one\n5 hello<13>x\n');
    expect(c.frames.map((f) => [f.text, f.mode])).toEqual([
      ['abc', 'octet'],
      ['line one', 'lf'],
      ['hello', 'octet'],
      ['<13>x', 'lf'],
    ]);
  });

  test('an LF after each octet-counted frame (a common deviation) yields no extra frames', () => {
    const c = frameAll('3 abc\n3 def\n');
    expect(texts(c)).toEqual(['abc', 'def']);
  });

  test('a count larger than maxFrameBytes is read as an LF frame and counted (epoch-ms prefix)', () => {
    const line = '1493738863000 hostname.example.com CEF:0|a|b|c|d|e|1|x=y';
    const c = frameAll(`${line}\n3 abc`, 1024);
    expect(c.frames).toEqual([
      { text: line, mode: 'lf', truncated: false },
      { text: 'abc', mode: 'octet', truncated: false },
    ]);
    expect(c.notices).toContain('octet_count_too_large');
  });

  test('a leading zero or digits not followed by a space is LF framing', () => {
    expect(frameAll('05 hello\n12345\n').frames.map((f) => [f.text, f.mode])).toEqual([
      ['05 hello', 'lf'],
      ['12345', 'lf'],
    ]);
  });

  test('`1 ` is an RFC 5424 line without its PRI (a relay stripped it), not a one-byte frame', () => {
    const line = '1 2024-02-19T13:18:51.000Z EXAMPLE-PC KES|11.0.0.0 - GNRL_EV_OBJECT_BLOCKED [event@23668 et="GNRL_EV_OBJECT_BLOCKED"] Описание';
    const stream = `${line}\n${line}\r\n3 abc13 <13>1 - - - -`;
    const want = [
      { text: Buffer.from(line).toString('latin1'), mode: 'lf', truncated: false },
      { text: Buffer.from(line).toString('latin1'), mode: 'lf', truncated: false },
      { text: 'abc', mode: 'octet', truncated: false },
      { text: '<13>1 - - - -', mode: 'octet', truncated: false },
    ];
    const c = frameAll(Buffer.from(stream));
    expect(c.frames).toEqual(want);
    expect(c.notices).toEqual([]);
    // Cut right after the 1 and after the space: the same frames.
    const buf = Buffer.from(stream);
    expect(frameChunks([buf.subarray(0, 1), buf.subarray(1, 2), buf.subarray(2)]).frames).toEqual(want);
  });

  test('one-byte counted frames (`1 X`) stay counted: only `1 DDDD-` and `1 - ` are PRI-less lines; every cut of the stream gives the same frames', () => {
    const line = '1 2024-02-19T13:18:51.000Z host KES|11.0.0.0 - GNRL_EV_OBJECT_BLOCKED [event@23668 et="GNRL_EV_OBJECT_BLOCKED"] x';
    const nil = '1 - host app - - - no time';
    const counted = '13 <13>1 - - - -';
    // A one-byte frame before counted frames, one whose byte is a digit or a dash followed
    // by a count, a PRI-less line with a time stamp and one without, a keepalive at the end.
    const stream = `1 x${counted}1 5${counted}1 -11 <13>1 - - -1 9\n${line}\n${nil}\n1 2${counted}1 Z`;
    const want = [
      ['x', 'octet'], ['<13>1 - - - -', 'octet'],
      ['5', 'octet'], ['<13>1 - - - -', 'octet'],
      ['-', 'octet'], ['<13>1 - - -', 'octet'],
      ['9', 'octet'],
      [line, 'lf'],
      [nil, 'lf'],
      ['2', 'octet'], ['<13>1 - - - -', 'octet'],
      ['Z', 'octet'],
    ];
    const buf = Buffer.from(stream);
    const got = (c: ReturnType<typeof frameAll>) => c.frames.map((f) => [f.text, f.mode]);
    expect(got(frameAll(buf))).toEqual(want);
    expect(frameAll(buf).notices).toEqual(['frame_empty']);
    for (let a = 1; a < buf.length; a++) {
      expect(got(frameChunks([buf.subarray(0, a), buf.subarray(a)])), `cut at ${a}`).toEqual(want);
    }
    // A byte at a time.
    expect(got(frameChunks([...buf].map((b) => Buffer.from([b]))))).toEqual(want);
    // 2000 counted frames after a one-byte frame: every one of them, none glued or cut.
    const many = '1 k' + Array.from({ length: 2000 }, (_, i) => { const m = `<13>1 - h a - - - CEF:0|KasperskyLab|SecurityCenter|14|E|n|1|cnt=${i}`; return `${Buffer.byteLength(m)} ${m}`; }).join('');
    const c = frameAll(many);
    expect(c.frames.length).toBe(2001);
    expect(c.frames.every((f) => f.mode === 'octet' && !f.truncated)).toBe(true);
    expect(c.discarded).toBe(0);
  });

  test('the stream ending right after `1 `, or inside what follows it', () => {
    expect(frameAll('1 ').frames).toEqual([]);
    expect(frameAll('1 ').notices).toEqual(['frame_incomplete']);
    expect(frameAll('1 -').frames).toEqual([{ text: '-', mode: 'octet', truncated: false }]);
    expect(frameAll('1 20').frames.map((f) => [f.text, f.mode])).toEqual([['2', 'octet'], ['0', 'lf']]);
  });

  test('absurd counts (up to 2^53 and beyond) never make the framer wait for them', () => {
    const c = frameAll('9007199254740993 x\n99999999999999999999999999 y\nok\n');
    expect(texts(c)).toEqual(['9007199254740993 x', '99999999999999999999999999 y', 'ok']);
  });

  test('the stream ending inside an octet frame emits it flagged truncated', () => {
    const c = frameAll('10 abc');
    expect(c.frames).toEqual([{ text: 'abc', mode: 'octet', truncated: true }]);
    // With no byte of the message received there is nothing to emit: only a notice.
    const empty = frameAll('10 ');
    expect(empty.frames).toEqual([]);
    expect(empty.notices).toEqual(['frame_incomplete']);
  });

  test('the framer holds at most maxFrameBytes + 1 bytes', () => {
    let max = 0;
    const f = new Framer({ frame: () => {}, discarded: () => {}, notice: () => {} }, { maxFrameBytes: 100 });
    for (let i = 0; i < 1000; i++) {
      f.push(Buffer.from(i % 7 === 0 ? '\n' : 'abcdefghijklmnopq'));
      max = Math.max(max, f.bufferedBytes);
    }
    expect(max).toBeLessThanOrEqual(101);
  });

  test('maxFrameBytes below 7: a PRI-less line (`1 2024-`) is cut at the limit however the bytes arrive', () => {
    const line = Buffer.from('1 2024-12-07T10:00:00Z h a - - - m\nnext\n', 'latin1');
    for (const max of [1, 2, 4, 6]) {
      const whole = frameAll(line, max);
      expect(whole.frames[0], `max ${max}`).toEqual({ text: '1 2024-'.slice(0, max), mode: 'lf', truncated: true });
      expect(whole.frames.slice(1).map((f) => f.text), `max ${max}`).toEqual(['next'.slice(0, max)]);
      expect(whole.discarded, `max ${max}`).toBe(34 - max + Math.max(0, 4 - max));
      const bytes: Buffer[] = [];
      for (let i = 0; i < line.length; i++) bytes.push(line.subarray(i, i + 1));
      expect(frameChunks(bytes, max), `max ${max}`).toEqual(whole);
      expect(frameChunks(cut(line, [7]), max), `max ${max}`).toEqual(whole);
    }
  });
});

describe('frames begun (what frame_timeout counts from)', () => {
  test('the count moves at the first byte of each frame: not while a cut line is skipped, but at the frame after it, and after an empty line', () => {
    const f = new Framer({ frame: () => undefined, discarded: () => undefined, notice: () => undefined }, { maxFrameBytes: 8 });
    f.push(Buffer.from('0123456789'));
    expect(f.framesBegun).toBe(1);
    expect(f.discarding).toBe(true);
    f.push(Buffer.from('rest'));
    expect(f.framesBegun).toBe(1);
    f.push(Buffer.from('\nnext'));
    expect(f.framesBegun).toBe(2);
    f.push(Buffer.from('\n\r\nab'));
    expect(f.framesBegun).toBe(4);
    f.push(Buffer.from('c 12 octets'));
    expect(f.framesBegun).toBe(4);
  });
});

describe('properties', () => {
  // Streams mixing LF frames, CRLF, NUL, octet-counted frames (some with LF inside),
  // over-long lines and digit-prefixed lines.
  const piece = fc.oneof(
    fc.string({ unit: fc.constantFrom('a', 'b', ' ', '=', '|', '\\', '1', '9', '\r'), maxLength: 40 }).map((s) => `${s}\n`),
    fc.string({ unit: fc.constantFrom('x', 'y', '\n', '\r', '\0', ' '), minLength: 1, maxLength: 30 }).map((s) => `${s.length} ${s}`),
    fc.string({ unit: fc.constantFrom('z', ' '), minLength: 60, maxLength: 200 }).map((s) => `${s}\n`),
    fc.nat({ max: 99999999 }).map((n) => `${n + 1} not a count really\n`),
    fc.constant('\0'),
    fc.constant('\r\n'),
  );
  const stream = fc.array(piece, { maxLength: 30 }).map((ps) => Buffer.from(ps.join(''), 'latin1'));

  test('cutting the stream at arbitrary points yields exactly the same frames', () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat({ max: 4000 }), { maxLength: 20 }), (buf, offsets) => {
        const whole = frameAll(buf, 64);
        const parts = frameChunks(cut(buf, offsets), 64);
        expect(parts).toEqual(whole);
      }),
      { numRuns: 500 },
    );
  });

  test('feeding the stream byte by byte yields exactly the same frames', () => {
    fc.assert(
      fc.property(stream, (buf) => {
        const whole = frameAll(buf, 64);
        const bytes: Buffer[] = [];
        for (let i = 0; i < buf.length; i++) bytes.push(buf.subarray(i, i + 1));
        expect(frameChunks(bytes, 64)).toEqual(whole);
      }),
      { numRuns: 300 },
    );
  });

  test('small limits (1-12) and PRI-less lines: no frame over maxFrameBytes, the same frames however the stream is cut', () => {
    const unit = fc.constantFrom('a', ' ', '1', '2', '0', '-', '<', '>', 'CEF:', '\r', '\0', '\u00e9', '2024-', '1 ', '- ');
    const body = fc.array(unit, { maxLength: 12 }).map((a) => a.join(''));
    const frame = fc.oneof(
      body.map((b) => `${b}\n`),
      body.map((b) => `${b}\r\n`),
      body.map((b) => (b.length > 0 ? `${b.length} ${b}` : 'x\n')),
      body.map((b) => `1 ${b}\n`),
      body.map((b) => `1 2024-${b}\n`),
      body.map((b) => `1 - ${b}\n`),
      body,
    );
    const smallStream = fc.array(frame, { maxLength: 8 }).map((fs) => Buffer.from(fs.join(''), 'latin1'));
    fc.assert(
      fc.property(smallStream, fc.array(fc.nat({ max: 200 }), { maxLength: 10 }), fc.integer({ min: 1, max: 12 }), (buf, offsets, max) => {
        const whole = frameAll(buf, max);
        for (const f of whole.frames) expect(f.text.length).toBeLessThanOrEqual(max);
        expect(frameChunks(cut(buf, offsets), max)).toEqual(whole);
        const bytes: Buffer[] = [];
        for (let i = 0; i < buf.length; i++) bytes.push(buf.subarray(i, i + 1));
        expect(frameChunks(bytes, max)).toEqual(whole);
      }),
      { numRuns: 1000 },
    );
  });

  test('every byte is accounted for: in a frame, a terminator, a count header, discarded or skipped', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (arr) => {
        const buf = Buffer.from(arr);
        const c = frameAll(buf, 32);
        const framed = c.frames.reduce((n, f) => n + f.text.length, 0);
        expect(framed + c.discarded).toBeLessThanOrEqual(buf.length);
        for (const f of c.frames) expect(f.text.length).toBeLessThanOrEqual(32);
      }),
      { numRuns: 500 },
    );
  });
});
