/** The batch status API's runs read back as the per-call path's ChainStatus, to compare the two. */
import type { ChainStatus } from '../../dist/block/image.js';
import { RUN_ALLOCATED, RUN_COMPRESSED, RUN_DATA, RUN_HOST, RUN_ZERO, type StatusRuns } from '../../dist/block/status-runs.js';

/** Run `i` of `r` as the ChainStatus chainStatus() would give for it. */
export function asChainStatus(r: StatusRuns, i: number): ChainStatus {
  const f = r.flags[i]!;
  const st: ChainStatus = {
    length: r.lengths[i]!, present: (f & RUN_ALLOCATED) !== 0, zero: (f & RUN_ZERO) !== 0, data: (f & RUN_DATA) !== 0, depth: r.depths[i]!,
  };
  if (f & RUN_HOST) {
    st.hostOffset = r.hosts[i]!;
    st.hostFile = r.files[st.depth];
  }
  if (f & RUN_COMPRESSED) st.compressed = true;
  return st;
}
