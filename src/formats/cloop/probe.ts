/** cloop (compressed loop, V2.0): the shell-script preamble its images start with. */
import { startsWith } from '../probe-util.js';

const CLOOP_V2_PREAMBLE = '#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$IMAGE offset=0\n';
/** The part every V2.0 preamble shares; the module arguments vary between tools. */
const CLOOP_V2_PREFIX = '#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=';

export function probeCloop(head: Uint8Array): number {
  if (head.length > CLOOP_V2_PREAMBLE.length && startsWith(head, CLOOP_V2_PREAMBLE)) return 2;
  return startsWith(head, CLOOP_V2_PREFIX) ? 2 : 0;
}
