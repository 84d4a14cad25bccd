/**
 * Traces of the differential executor (executor.c): parsing, the one table of
 * normalizations (values that may differ between any two correct runs, each by field name
 * with its reason), and the step-by-step comparison of a native trace with snapvisor's.
 */

/** One step line: `S <index> <op> key=value…`. */
export interface TraceStep { index: number; op: string; fields: Array<[string, string]>; raw: string }
/** One program's trace: its steps and how its process ended (`exit=0`, `signal=14`, …). */
export interface ProgramTrace { id: number; steps: TraceStep[]; end: string; cut: boolean }

/** Parse the executor's stdout into program traces, by program id. */
export function parseTrace(text: string): Map<number, ProgramTrace> {
  const out = new Map<number, ProgramTrace>();
  let cur: ProgramTrace | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('P ')) {
      cur = { id: Number(line.slice(2)), steps: [], end: '(no end line: the executor died)', cut: false };
      out.set(cur.id, cur);
    } else if (!cur) continue;
    else if (line.startsWith('S ')) {
      const [, index, op, ...kv] = line.split(' ');
      cur.steps.push({ index: Number(index), op, fields: kv.map((f) => { const eq = f.indexOf('='); return eq < 0 ? [f, ''] : [f.slice(0, eq), f.slice(eq + 1)]; }), raw: line });
    } else if (line === 'C') cur.cut = true;
    else if (line.startsWith('E ')) cur.end = line.slice(2);
  }
  return out;
}

/** Whether a stat line is a directory's. */
const isDirLine = (fields: Array<[string, string]>) => fields.some(([k, m]) => k === 'mode' && (Number.parseInt(m, 8) & 0o170000) === 0o040000);

/** How a field's value is made comparable. */
export interface Normalization {
  field: string;
  /** symbol: replaced by its order of first appearance in the program (identity kept, value dropped); erase: replaced by `*`; or a function. */
  how: 'symbol' | 'erase' | ((v: string, fields: Array<[string, string]>) => string);
  reason: string;
}

/**
 * Every normalization, in one place. A field not listed here is compared exactly; nothing
 * is dropped without a line here.
 */
export const NORMALIZATIONS: Normalization[] = [
  { field: 'ino', how: 'symbol', reason: 'inode numbers are the filesystem\'s own (ext4/tmpfs natively, the overlay\'s ids in snapvisor); which names share an inode is still compared' },
  { field: 'dev', how: 'symbol', reason: 'device numbers of the scratch filesystem and of pipes/sockets differ by host; which files share a device is still compared' },
  { field: 'addr', how: 'symbol', reason: 'mmap chooses addresses (ASLR natively, the sandbox\'s own layout in snapvisor); offsets from a mapping are compared through peek/poke' },
  { field: 'pid', how: 'symbol', reason: 'natively pids come from the host, in snapvisor from the sandbox\'s own pid namespace; which process is meant is still compared' },
  { field: 'atime', how: 'erase', reason: 'wall-clock time of the run' },
  { field: 'mtime', how: 'erase', reason: 'wall-clock time of the run' },
  { field: 'ctime', how: 'erase', reason: 'wall-clock time of the run' },
  { field: 'blocks', how: (v, fields) => (isDirLine(fields) ? 'dir' : v === '0' ? '0' : '>0'), reason: 'st_blocks counts the filesystem\'s allocation units (4 KiB blocks on ext4/tmpfs, exact 512-byte units or 64 KiB chunks in the upper layer; directories have none on tmpfs); whether a file has anything allocated is compared' },
  { field: 'size', how: (v, fields) => (isDirLine(fields) ? 'dir' : v), reason: 'a directory\'s st_size is the filesystem\'s own measure (4096 on ext4, entries × 20 on tmpfs, 0 in the upper layer); files\' sizes are compared exactly' },
  { field: 'ents', how: (v) => v.split(',').sort().join(','), reason: 'getdents returns entries in the filesystem\'s hash order; the set of names and types is compared' },
];
const BY_FIELD = new Map(NORMALIZATIONS.map((n) => [n.field, n]));

/** A step line with every normalization applied (symbols numbered per program). */
export function normalizeProgram(p: ProgramTrace): string[] {
  const symbols = new Map<string, Map<string, string>>();
  const sym = (field: string, v: string) => {
    let m = symbols.get(field);
    if (!m) symbols.set(field, (m = new Map()));
    if (!m.has(v)) m.set(v, `${field}${m.size}`);
    return m.get(v)!;
  };
  const lines = p.steps.map((s) => [s.index, s.op, ...s.fields.map(([k, v]) => {
    const n = BY_FIELD.get(k);
    if (!n) return v === '' ? k : `${k}=${v}`;
    const nv = n.how === 'symbol' ? sym(k, v) : n.how === 'erase' ? '*' : n.how(v, s.fields);
    return `${k}=${nv}`;
  })].join(' '));
  lines.push(`end ${p.end.replace(/pid=\d+/g, 'pid=*')}`);
  return lines;
}

/** The first place two traces of one program disagree. */
export interface Difference {
  programId: number;
  /** Index in the normalized lines (a step index, or steps.length for the end line). */
  at: number;
  /** The operation of the step (or 'end'). */
  op: string;
  native: string;
  sandbox: string;
}

/** Compare one program's traces; undefined when they agree after normalization. */
export function compareProgram(native: ProgramTrace, sandbox: ProgramTrace | undefined): Difference | undefined {
  const n = normalizeProgram(native);
  const s = sandbox ? normalizeProgram(sandbox) : ['(program missing from snapvisor\'s trace)'];
  for (let k = 0; k < Math.max(n.length, s.length); k++) {
    if (n[k] !== s[k]) {
      const op = n[k]?.startsWith('end ') ? 'end' : (n[k] ?? s[k] ?? '').split(' ')[1] ?? '?';
      return { programId: native.id, at: k, op, native: n[k] ?? '(nothing)', sandbox: s[k] ?? '(nothing)' };
    }
  }
  return undefined;
}

/** A field of a normalized line (`key=value`), or undefined. */
export function fieldOf(line: string, key: string): string | undefined {
  const m = line.split(' ').find((f) => f.startsWith(key + '='));
  return m?.slice(key.length + 1);
}
