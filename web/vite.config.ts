import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// Served by the daemon at /dashboard/ (src/api/dashboard.ts) under a CSP without 'unsafe-inline':
// no inline scripts or styles, so no module-preload polyfill and CSS in files.
export default defineConfig({
  root: import.meta.dirname,
  base: '/dashboard/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
});
