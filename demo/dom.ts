/** The two DOM helpers both tabs of the page use: find by `data-testid`, build an element. */

export const $ = <T extends HTMLElement = HTMLElement>(testid: string, root: ParentNode = document): T => {
  const node = root.querySelector<T>(`[data-testid="${testid}"]`);
  if (!node) throw new Error(`missing element ${testid}`);
  return node;
};

export const el = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string,
  attrs: Record<string, string> = {},
): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};
