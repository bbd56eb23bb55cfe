/**
 * qemu-img check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename
 *
 * Exit codes as qemu-img: 0 clean, 1 check not completed, 2 corruptions, 3 leaks only, 63 no checks for this format.
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { parseOutputFormat, printHelp } from '../cli/common.js';
import { qdictOrder, qjsonPretty } from '../cli/qjson.js';
import type { CheckResult, JsonObject, RepairMode } from '../block/driver.js';
import type { Image } from '../block/image.js';

export const EXIT_CHECK_NOT_COMPLETED = 1;
export const EXIT_CORRUPTIONS = 2;
export const EXIT_LEAKS = 3;
export const EXIT_NO_CHECKS = 63;

/** printf("%.2f") of part*100/total: an exact binary tie (3.125) rounds to even (3.12), as glibc does. */
function pct(part: number, total: number): string {
  const x = (part * 100) / total;
  const h = x * 100;
  if (Number.isInteger(x * 8) && h - Math.floor(h) === 0.5) {
    const f = Math.floor(h);
    return ((f % 2 === 0 ? f : f + 1) / 100).toFixed(2);
  }
  return x.toFixed(2);
}

export function checkHuman(r: CheckResult): string {
  let s = '';
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) {
    s += 'No errors were found on the image.\n';
  } else {
    if (r.corruptions) s += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    if (r.leaks) s += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    if (r.checkErrors) s += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    s += `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ` +
      `${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters\n`;
  }
  if (r.imageEndOffset > 0) s += `Image end offset: ${r.imageEndOffset}\n`;
  return s;
}

export function checkJson(r: CheckResult, filename: string, format: string): JsonObject {
  const o: JsonObject = { filename, format, 'check-errors': r.checkErrors };
  const opt: Array<[string, number]> = [
    ['image-end-offset', r.imageEndOffset], ['corruptions', r.corruptions], ['leaks', r.leaks],
    ['corruptions-fixed', r.corruptionsFixed], ['leaks-fixed', r.leaksFixed], ['total-clusters', r.totalClusters],
    ['allocated-clusters', r.allocatedClusters], ['fragmented-clusters', r.fragmentedClusters],
    ['compressed-clusters', r.compressedClusters],
  ];
  for (const [k, v] of opt) if (v !== 0) o[k] = v;
  return qdictOrder(o);
}

export default async function checkCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':hf:r:T:qU', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'repair', arg: 'required', key: 'r' },
    { name: 'output', arg: 'required', key: 'output' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'quiet', arg: 'none', key: 'q' },
    { name: 'cache', arg: 'required', key: 'T' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs((t) => cli.errRaw(t));
  let output = 'human';
  let repair: RepairMode = 'none';
  let quiet = false;
  for (const o of r.options) {
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = o.value!; break;
      case 'r':
        if (o.value === 'leaks') repair = 'leaks';
        else if (o.value === 'all') repair = 'all';
        else return cli.usageError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${o.value}`);
        break;
      case 'output': output = o.value!; break;
      case 'object':
        try { args.secrets.add(o.value!); } catch (e) { return cli.fail(e); }
        break;
      case 'image-opts': args.imageOpts = true; break;
      case 'U': args.forceShare = true; break;
      case 'q': quiet = true; break;
      case 'T': break;
    }
  }
  if (r.operands.length !== 1) return cli.usageError('Expecting one image file name');
  const fmt = parseOutputFormat(output);
  if (!fmt) {
    cli.error('--output must be used with human or json as argument.');
    return 1;
  }
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);

  let img: Image;
  try {
    img = await openForCommand(r.operands[0]!, args, { readOnly: repair === 'none', check: true });
  } catch (e) {
    return cli.fail(e);
  }
  try {
    let res: CheckResult | undefined;
    try {
      res = await img.check(repair);
    } catch (e) {
      cli.fail(e, 'Check failed: ');
      return EXIT_CHECK_NOT_COMPLETED;
    }
    if (!res) {
      cli.error('This image format does not support checks');
      return EXIT_NO_CHECKS;
    }
    for (const m of res.messages) cli.errRaw(m.endsWith('\n') ? m : `${m}\n`);
    if (res.failure) return cli.fail(res.failure, 'Check failed: ');
    if (res.corruptionsFixed || res.leaksFixed) {
      const fixed = { corruptionsFixed: res.corruptionsFixed, leaksFixed: res.leaksFixed };
      if (fmt === 'human' && !quiet) {
        cli.out('The following inconsistencies were found and repaired:\n\n' +
          `    ${res.leaksFixed} leaked clusters\n    ${res.corruptionsFixed} corruptions\n\n` +
          'Double checking the fixed image now...\n');
      }
      const again = await img.check('none');
      // the second run reports what it finds, as qemu-img's does
      for (const m of again?.messages ?? []) cli.errRaw(m.endsWith('\n') ? m : `${m}\n`);
      if (again?.failure) return cli.fail(again.failure, 'Check failed: ');
      if (again) res = { ...again, ...fixed, messages: [] };
    }
    if (fmt === 'json') cli.out(qjsonPretty(checkJson(res, img.filename, img.format)) + '\n');
    else if (!quiet) cli.out(checkHuman(res));
    if (res.checkErrors) {
      cli.error('Check failed');
      return EXIT_CHECK_NOT_COMPLETED;
    }
    if (res.corruptions) return EXIT_CORRUPTIONS;
    if (res.leaks) return EXIT_LEAKS;
    return 0;
  } finally {
    await img.close();
  }
}
