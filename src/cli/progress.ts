/**
 * qemu-img's -p progress line: "    (NN.NN/100%)" followed by a carriage return, printed when the
 * progress has moved by at least one percent, then a final newline.
 *
 * SIGUSR1 without -p: qemu-img 7.2 handles the signal only once its main loop runs again, which is
 * after the operation, so however many signals came it prints one "    (100.00/100%)" line (with a
 * newline) to stderr at the end; with -p the signal adds nothing.
 */
export class Progress {
  private last = -1;
  private current = 0;
  private signalled = false;
  private readonly onSignal = (): void => {
    this.signalled = true;
  };

  constructor(
    private readonly enabled: boolean,
    private readonly write: (s: string) => void,
    private readonly writeErr: (s: string) => void = (s) => process.stderr.write(s),
  ) {
    process.on('SIGUSR1', this.onSignal);
    if (enabled) {
      this.print(0);
      this.last = 0;
    }
  }

  private print(pct: number): void {
    this.write(`    (${pct.toFixed(2)}/100%)\r`);
  }

  update(done: number, total: number): void {
    const pct = total > 0 ? Math.min(100, (done * 100) / total) : 100;
    this.current = pct;
    if (!this.enabled) return;
    if (pct - this.last >= 1 || (pct === 100 && this.last !== 100)) {
      this.print(pct);
      this.last = pct;
    }
  }

  finish(): void {
    process.off('SIGUSR1', this.onSignal);
    if (!this.enabled) {
      if (this.signalled) this.writeErr(`    (${this.current.toFixed(2)}/100%)\n`);
      return;
    }
    if (this.last !== 100) this.print(100);
    this.print(100);
    this.write('\n');
  }
}
