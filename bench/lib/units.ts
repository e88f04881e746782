/** Small conversions the phases and the report share. */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const mb = (bytes: number) => bytes / (1024 * 1024);
export const ms = (us: number) => us / 1000;
export const round = (x: number, digits: number) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);
