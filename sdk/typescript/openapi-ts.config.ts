// `npx openapi-ts` reads the document of a local server; `-i <path or URL>` reads another.
// The fetch client is a plugin of openapi-ts: its code is generated into src/client/client,
// so the SDK needs no runtime package.
import { defineConfig } from '@hey-api/openapi-ts';

export default defineConfig({
  input: 'http://127.0.0.1:8000/openapi.json',
  output: 'src/client',
  plugins: ['@hey-api/client-fetch', '@hey-api/typescript', '@hey-api/sdk'],
});
