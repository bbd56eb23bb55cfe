/**
 * qemu-img's -p progress line: "    (NN.NN/100%)" followed by a carriage return, printed when the
 * progress has moved by at least one percent, then a final newline. SIGUSR1 prints the current
 * value once even without -p, as qemu-img does.
 */
export class Progress {
  private last = -1;
  private current = 0;
  private readonly onSignal = (): void => this.print(this.current);

  constructor(
    private readonly enabled: boolean,
    private readonly write: (s: string) => void,
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
    if (!this.enabled) return;
    if (this.last !== 100) this.print(100);
    this.print(100);
    this.write('\n');
  }
}
