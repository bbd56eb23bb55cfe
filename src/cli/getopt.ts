/**
 * GNU getopt_long, as qemu-img uses it: clustered short options (`-qf raw`), attached or separate
 * arguments (`-fqcow2`, `-f qcow2`), `--long=value` and `--long value`, unambiguous prefixes of long
 * options, `--` ending options, and permutation (options may follow operands).
 */

export interface LongOption {
  name: string;
  /** 'none' | 'required' | 'optional' (optional takes a value only as --name=value). */
  arg: 'none' | 'required' | 'optional';
  /** The key reported for it: a short option letter, or the long name itself. */
  key: string;
}

export interface ParsedOption {
  key: string;
  value?: string;
  /** As the user spelled it, for messages. */
  spelled: string;
}

export type GetoptResult =
  | { ok: true; options: ParsedOption[]; operands: string[] }
  | { ok: false; message: string };

/** Short-option spec in getopt syntax: "hf:F:q" (a colon after a letter: it takes an argument). */
function parseShortSpec(spec: string): Map<string, boolean> {
  const m = new Map<string, boolean>();
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i]!;
    if (c === ':' || c === '+' || c === '-') continue;
    const takes = spec[i + 1] === ':';
    m.set(c, takes);
  }
  return m;
}

export function getopt(argv: readonly string[], shortSpec: string, longs: readonly LongOption[]): GetoptResult {
  const shorts = parseShortSpec(shortSpec);
  const options: ParsedOption[] = [];
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const exact = longs.find((l) => l.name === name);
      const candidates = exact ? [exact] : longs.filter((l) => l.name.startsWith(name));
      const distinct = new Set(candidates.map((c) => c.key + '/' + c.arg));
      // qemu-img reports both unknown and ambiguous long options with the token as typed
      if (candidates.length === 0 || distinct.size > 1) return { ok: false, message: `unrecognized option '${a}'` };
      const opt = candidates[0]!;
      if (opt.arg === 'none') {
        if (eq >= 0) return { ok: false, message: `unrecognized option '${a}'` };
        options.push({ key: opt.key, spelled: `--${opt.name}` });
      } else if (eq >= 0) {
        options.push({ key: opt.key, value: a.slice(eq + 1), spelled: `--${opt.name}` });
      } else if (opt.arg === 'required') {
        if (i + 1 >= argv.length) return { ok: false, message: `missing argument for option '${a}'` };
        options.push({ key: opt.key, value: argv[++i]!, spelled: `--${opt.name}` });
      } else {
        options.push({ key: opt.key, spelled: `--${opt.name}` });
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const takes = shorts.get(c);
        if (takes === undefined) return { ok: false, message: `unrecognized option '${a}'` };
        if (!takes) {
          options.push({ key: c, spelled: `-${c}` });
          continue;
        }
        if (j + 1 < a.length) {
          options.push({ key: c, value: a.slice(j + 1), spelled: `-${c}` });
        } else {
          if (i + 1 >= argv.length) return { ok: false, message: `missing argument for option '${a}'` };
          options.push({ key: c, value: argv[++i]!, spelled: `-${c}` });
        }
        break;
      }
      continue;
    }
    operands.push(a);
  }
  return { ok: true, options, operands };
}
