/**
 * An error from the server (its `code` is one of the protocol's error codes)
 * or from the SDK itself (`disconnected`, `closed`, `not_open`).
 */
export class ChorusError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'ChorusError';
    this.code = code;
    if (details.id != null) this.id = details.id;
    if (details.room != null) this.room = details.room;
  }
}
