/**
 * xterm.js writes its theme and cell-size rules as text into `<style>`
 * elements it makes with `document.createElement('style')`. The dashboard's
 * `style-src 'self'` (no 'unsafe-inline') refuses any inline `<style>`, even an
 * empty one, so on this page such an element is an inert, hidden stand-in whose
 * text goes into a constructed stylesheet adopted by the document: CSSOM, which
 * the CSP allows, and no inline style is ever parsed.
 */
const sheets = new Map<HTMLElement, CSSStyleSheet>();

function standIn(doc: Document, create: Document['createElement']): HTMLElement {
  const el = create.call(doc, 'bulwark-style');
  el.hidden = true;
  const sheet = new CSSStyleSheet();
  sheets.set(el, sheet);
  doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
  let text = '';
  Object.defineProperty(el, 'textContent', {
    get: () => text,
    set: (css: string) => {
      text = css;
      sheet.replaceSync(css);
    },
  });
  return el;
}

let installed = false;
export function routeStyleTextToCssom(): void {
  if (installed) return;
  installed = true;
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, opts?: ElementCreationOptions) {
    return tag.toLowerCase() === 'style' ? standIn(this, create) : create.call(this, tag, opts);
  } as Document['createElement'];
}

/** Drops the sheets of stand-ins no longer in the document (a closed terminal's). */
export function dropDetachedSheets(): void {
  const gone = new Set<CSSStyleSheet>();
  for (const [el, sheet] of sheets) {
    if (el.isConnected) continue;
    gone.add(sheet);
    sheets.delete(el);
  }
  document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => !gone.has(s));
}
