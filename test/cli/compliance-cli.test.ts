import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerComplianceCommands } from '../../src/cli/commands/compliance.js';
import { CONTROLS, FRAMEWORKS } from '../../src/compliance/catalogue.js';
import { REPORT_FORMATS } from '../../src/compliance/render.js';
import { PASSWORD, startTestApi, type TestApi } from '../helpers/api.js';
import { startCliHarness } from '../helpers/cli.js';

/** `bulwark compliance ...` in-process against a listening API: every framework in every format, with evidence. */
describe('bulwark compliance CLI (SQLite)', () => {
  let api: TestApi;
  let h: Awaited<ReturnType<typeof startCliHarness>>;
  let dir: string;
  let ruleId: string;
  // A hostile resource name: it must come out inert in Markdown and HTML.
  const EVIL = '<img src=x onerror=alert(1)>|**x**';

  beforeAll(async () => {
    api = await startTestApi('sqlite');
    dir = await mkdtemp(join(tmpdir(), 'bw-cmp-cli-'));
    await api.persona('cmpcli-p', 'cmpcli-member', 'member');
    const g = await api.call('POST', '/network/v2.0/security-groups', undefined, {
      security_group: { name: EVIL },
    });
    expect(g.status).toBe(201);
    const r = await api.call('POST', '/network/v2.0/security-group-rules', undefined, {
      security_group_rule: {
        security_group_id: g.json.security_group.id,
        direction: 'ingress',
        protocol: 'tcp',
        port_range_min: 22,
        port_range_max: 22,
        remote_ip_prefix: '0.0.0.0/0',
      },
    });
    ruleId = r.json.security_group_rule.id;
    h = await startCliHarness(api, registerComplianceCommands);
  });
  afterAll(async () => {
    await h?.close();
    await api?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists the catalogue, all of it or one framework', async () => {
    expect((await h.json('compliance', 'controls')).map((c: { id: string }) => c.id)).toEqual(
      CONTROLS.map((c) => c.id),
    );
    const pci = await h.json('compliance', 'controls', '--framework', 'pci-dss');
    expect(pci.find((c: any) => c.id === 'disk-encryption')['pci-dss']).toBe('3.5.1, 3.5.1.2');
    expect(await h.cli('compliance', 'controls')).toMatch(/admin-ports-exposed/);
  });

  it('renders each framework in each format, with verdicts and the offending resources', async () => {
    for (const fw of FRAMEWORKS)
      for (const format of REPORT_FORMATS) {
        const out = await h.cli('compliance', 'report', '--framework', fw, '--format', format);
        const mapped = CONTROLS.filter((c) => c.mappings[fw].length > 0);
        if (format === 'json') {
          const rep = JSON.parse(out);
          expect(rep.framework).toBe(fw);
          expect(rep.rows.map((r: any) => r.control.id)).toEqual(mapped.map((c) => c.id));
          const exposed = rep.rows.find((r: any) => r.control.id === 'admin-ports-exposed');
          expect(exposed.result).toMatchObject({
            verdict: 'fail',
            offenders: [expect.objectContaining({ id: ruleId, name: EVIL })],
          });
          expect(exposed.result.checked_at).toMatch(/^\d{4}-\d\d-\d\dT/);
          continue;
        }
        for (const c of mapped) expect(out, `${fw} ${format}`).toContain(c.id);
        expect(out).toContain(ruleId);
        expect(out).toContain('ingress tcp 22 from 0.0.0.0/0');
        expect(out).not.toContain('<img');
        if (format === 'html') {
          expect(out).toMatch(/^<!doctype html>/);
          expect(out).toContain('&lt;img src=x onerror=alert(1)&gt;|**x**');
          expect(out).toContain("default-src 'none'");
        } else {
          expect(out).toContain('&lt;img src=x onerror=alert\\(1\\)&gt;\\|\\*\\*x\\*\\*');
          expect(out).toMatch(/\| admin-ports-exposed \| [^|]+ \| FAIL \|/);
        }
      }
  });

  it('writes a report file readable only by its owner; history lists every run', async () => {
    const file = join(dir, 'soc2.html');
    await h.cli('compliance', 'report', '--framework', 'soc2', '--format', 'html', '--output', file);
    expect(await readFile(file, 'utf8')).toMatch(/SOC 2/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const runs = await h.json('compliance', 'history', '--limit', '50');
    expect(runs.length).toBe(3 * 3 + 1);
    expect(runs[0].passed + runs[0].failed + runs[0].not_applicable).toBe(CONTROLS.length);
  });

  it('refuses members and unknown frameworks', async () => {
    expect((await h.failure('compliance', 'report', '--framework', 'iso27001')).message).toMatch(/iso27001/);
    h.loginAs('cmpcli-member', PASSWORD, 'cmpcli-p');
    expect((await h.failure('compliance', 'history')).message).toMatch(/not authorized|403|admin/i);
  });
});
