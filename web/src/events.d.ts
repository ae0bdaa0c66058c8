// JsSIP's typings extend `EventEmitter` from 'events' (the npm `events` package in the
// browser bundle); this declares the part of its API the WIC uses, without pulling in
// Node's typings.
declare module 'events' {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  type Listener = (...args: any[]) => void;
  export class EventEmitter {
    on(event: string, listener: Listener): this;
    once(event: string, listener: Listener): this;
    off(event: string, listener: Listener): this;
    removeAllListeners(event?: string): this;
    listeners(event: string): Listener[];
    emit(event: string, ...args: unknown[]): boolean;
  }
}
