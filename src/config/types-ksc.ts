/** The loaded `ksc` configuration section (see schema-ksc.ts). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface KscConfigSection {}
