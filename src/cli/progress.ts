/**
 * qemu-img's -p progress line: "    (NN.NN/100%)" followed by a carriage return, printed when the
 * progress has moved by at least one percent, then a final newline.
 *
 * SIGUSR1 without -p: qemu-img 7.2 handles the signal only once its main loop runs again, which is
 * after the operation, so however many signals came it prints one "    (100.00/100%)" line (with a
 * newline) to stderr at the end; with -p the signal adds nothing.
 */
/**
 * qemu keeps the value in a C float and prints it with "%3.2f": the float's exact value rounded,
 * ties to even (3.125 prints as 3.12, where toFixed would say 3.13).
 */
function percent(pct: number): string {
  const y = Math.fround(pct) * 100;
  let n = Math.round(y);
  if (y - Math.floor(y) === 0.5 && Math.floor(y) % 2 === 0) n = Math.floor(y);
  return `${Math.floor(n / 100)}.${String(n % 100).padStart(2, '0')}`;
}

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
    /** qemu prints every report of 0 % (amend's walks report one after the opening 0 %). */
    private readonly repeatZero = false,
    private readonly writeErr: (s: string) => void = (s) => process.stderr.write(s),
  ) {
    process.on('SIGUSR1', this.onSignal);
    if (enabled) {
      this.print(0);
      this.last = 0;
    }
  }

  private print(pct: number): void {
    this.write(`    (${percent(pct)}/100%)\r`);
  }

  update(done: number, total: number): void {
    const pct = total > 0 ? Math.min(100, (done * 100) / total) : 100;
    this.current = pct;
    if (!this.enabled) return;
    // qemu prints a move of a percent either way (amend's refcount walks can step back)
    if (pct - this.last >= 1 || this.last - pct > 1 || (pct === 100 && this.last !== 100) || (pct === 0 && this.repeatZero)) {
      this.print(pct);
      this.last = pct;
    }
  }

  /** qemu-img amend's ending: one closing 100 % whatever was printed before, then the newline. */
  end(newline = true): void {
    process.off('SIGUSR1', this.onSignal);
    if (!this.enabled) return;
    this.print(100);
    if (newline) this.write('\n');
  }

  /** Stop listening for SIGUSR1 and print nothing (a command that ends its progress line itself). */
  detach(): void {
    process.off('SIGUSR1', this.onSignal);
  }

  finish(): void {
    process.off('SIGUSR1', this.onSignal);
    if (!this.enabled) {
      if (this.signalled) this.writeErr(`    (${percent(this.current)}/100%)\n`);
      return;
    }
    if (this.last !== 100) this.print(100);
    this.print(100);
    this.write('\n');
  }
}
