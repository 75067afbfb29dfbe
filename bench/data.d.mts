export function dataFile(n: number, framing?: 'lf' | 'octet'): string;
