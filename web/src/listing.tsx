import type { FormEvent, ReactNode } from 'react';
import { ErrorBox, Loading } from './ui';

/**
 * The list/create scaffolding every resource page shares: a captioned table
 * of columns, a create form titled by its action, and a confirm-less danger
 * button that runs an action. One shape keeps the pages' markup (and their
 * accessible names) alike.
 */
export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
}

export function DataTable<T>({
  caption,
  columns,
  rows,
  rowKey,
  rowClass,
  className,
}: {
  caption: string;
  columns: Column<T>[];
  rows: T[];
  rowKey: (row: T) => string;
  rowClass?: (row: T) => string;
  className?: string;
}) {
  return (
    <table className={className}>
      <caption>{caption}</caption>
      <thead>
        <tr>
          {columns.map((c) => (
            <th scope="col" key={c.header}>
              {c.header}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={rowKey(r)} className={rowClass?.(r)}>
            {columns.map((c) => (
              <td key={c.header}>{c.cell(r)}</td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A table whose rows are still loading (`null`) says what it waits for. */
export function Listing<T>({
  what,
  rows,
  ...table
}: Omit<Parameters<typeof DataTable<T>>[0], 'rows'> & {
  what: string;
  rows: T[] | null;
}) {
  return rows === null ? <Loading what={what} /> : <DataTable rows={rows} {...table} />;
}

/** A create form: its title names the form, heads it and (unless `submit` says otherwise) labels its button. */
export function CreateForm({
  title,
  submit = title,
  busy,
  error,
  onSubmit,
  children,
}: {
  title: string;
  submit?: string;
  busy: boolean;
  error: string | null;
  onSubmit: (e: FormEvent) => void;
  children: ReactNode;
}) {
  return (
    <form onSubmit={onSubmit} className="inline-form" aria-label={title}>
      <h2>{title}</h2>
      {children}
      <button type="submit" disabled={busy}>
        {submit}
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

/** A select over fixed choices: plain values, or [value, label] pairs. */
export function Choice({
  name,
  value,
  onChange,
  options,
}: {
  name: string;
  value: string;
  onChange: (value: string) => void;
  options: readonly (string | readonly [string, string])[];
}) {
  return (
    <select name={name} value={value} onChange={(e) => onChange(e.target.value)}>
      {options.map((o) => {
        const [v, label] = typeof o === 'string' ? [o, o] : o;
        return (
          <option key={v} value={v}>
            {label}
          </option>
        );
      })}
    </select>
  );
}

/** A destructive row action; `onClick` is the whole action (run, then reload). */
export function DangerButton({
  busy,
  label,
  onClick,
  children,
}: {
  busy: boolean;
  label?: string;
  onClick: () => void;
  children: ReactNode;
}) {
  return (
    <button type="button" className="danger" disabled={busy} aria-label={label} onClick={onClick}>
      {children}
    </button>
  );
}
