/**
 * xterm.js writes its theme and cell-size rules as text into `<style>`
 * elements, which the dashboard's `style-src 'self'` refuses (no
 * 'unsafe-inline'). Text set on a `<style>` element goes instead into a
 * constructed stylesheet adopted by the document: CSSOM, which the CSP allows,
 * and no inline style is ever parsed. The element itself stays empty.
 */
const native = Object.getOwnPropertyDescriptor(Node.prototype, 'textContent')!;
const sheets = new Map<HTMLStyleElement, CSSStyleSheet>();

function sheetOf(el: HTMLStyleElement): CSSStyleSheet {
  let sheet = sheets.get(el);
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheets.set(el, sheet);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  }
  return sheet;
}

let installed = false;
export function routeStyleTextToCssom(): void {
  if (installed) return;
  installed = true;
  Object.defineProperty(HTMLStyleElement.prototype, 'textContent', {
    configurable: true,
    get(this: HTMLStyleElement) {
      const sheet = sheets.get(this);
      return sheet
        ? Array.from(sheet.cssRules, (r) => r.cssText).join('\n')
        : (native.get!.call(this) as string);
    },
    set(this: HTMLStyleElement, css: string) {
      sheetOf(this).replaceSync(css);
    },
  });
}

/** Drops the sheets of style elements no longer in the document (a closed terminal's). */
export function dropDetachedSheets(): void {
  const gone = new Set<CSSStyleSheet>();
  for (const [el, sheet] of sheets) {
    if (el.isConnected) continue;
    gone.add(sheet);
    sheets.delete(el);
  }
  document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => !gone.has(s));
}
