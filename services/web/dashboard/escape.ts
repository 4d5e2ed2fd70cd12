// The one HTML escape of the web service. Every value that came from a user or another service
// goes through esc() before it reaches a page, in text and in attribute values alike.

export const esc = (v: unknown): string => String(v ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)
