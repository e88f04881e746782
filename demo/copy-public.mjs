// Part of `npm run build`: the demo's HTML and CSS next to its compiled JavaScript in dist/demo.
import { cpSync } from 'node:fs';

cpSync(new URL('./public/', import.meta.url), new URL('../dist/demo/', import.meta.url), { recursive: true });
