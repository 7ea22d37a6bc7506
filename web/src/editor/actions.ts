// Built-in actions and their `with:` fields. The server has no action-list endpoint yet,
// so the palette and the side-panel forms come from this table (docs/workflows.md).
export interface ActionField {
  name: string;
  label: string;
  kind: 'text' | 'multiline' | 'number' | 'boolean' | 'list' | 'select';
  options?: string[];
  required?: boolean;
  help?: string;
}

export interface ActionDef {
  uses: string;
  title: string;
  description: string;
  fields: ActionField[];
  /** The `with:` (or `run:`) a new step of this action starts with. */
  template: Record<string, unknown>;
}

export const ACTIONS: ActionDef[] = [
  {
    uses: 'shell',
    title: 'Shell',
    description: 'Run a shell command',
    fields: [
      { name: 'command', label: 'Command', kind: 'multiline', required: true },
      { name: 'working_directory', label: 'Working directory', kind: 'text' },
    ],
    template: { run: 'echo hello' },
  },
  {
    uses: 'python',
    title: 'Python',
    description: 'Call a Python function',
    fields: [{ name: 'function', label: 'Function (pkg.module:func)', kind: 'text', required: true }],
    template: { uses: 'python', with: { function: 'platform:python_version' } },
  },
  {
    uses: 'http',
    title: 'HTTP request',
    description: 'Call a URL',
    fields: [
      { name: 'url', label: 'URL', kind: 'text', required: true },
      { name: 'method', label: 'Method', kind: 'select', options: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] },
      { name: 'body', label: 'Body', kind: 'multiline' },
      { name: 'expect_status', label: 'Expected status', kind: 'number' },
    ],
    template: { uses: 'http', with: { url: 'https://example.com', method: 'GET' } },
  },
  {
    uses: 'sleep',
    title: 'Sleep',
    description: 'Wait durably for a while',
    fields: [
      { name: 'duration', label: 'Duration (e.g. 5m)', kind: 'text' },
      { name: 'until', label: 'Until (ISO time)', kind: 'text' },
    ],
    template: { uses: 'sleep', with: { duration: '10s' } },
  },
  {
    uses: 'approval',
    title: 'Approval',
    description: 'Wait for a person to approve',
    fields: [
      { name: 'message', label: 'Message', kind: 'text' },
      { name: 'approvers', label: 'Approvers (role:NAME, user:NAME; comma-separated)', kind: 'list' },
      { name: 'timeout', label: 'Approval timeout', kind: 'text' },
    ],
    template: { uses: 'approval', with: { message: 'Please approve' } },
  },
  {
    uses: 'workflow',
    title: 'Sub-workflow',
    description: 'Run a deployed workflow',
    fields: [
      { name: 'workflow', label: 'Workflow name', kind: 'text', required: true },
      { name: 'wait', label: 'Wait for it', kind: 'boolean' },
    ],
    template: { uses: 'workflow', with: { workflow: 'hello' } },
  },
  {
    uses: 'notify',
    title: 'Notify',
    description: 'Send a message to a channel',
    fields: [
      { name: 'channel', label: 'Channel', kind: 'text' },
      { name: 'url', label: 'URL', kind: 'text' },
      { name: 'title', label: 'Title', kind: 'text' },
      { name: 'message', label: 'Message', kind: 'multiline' },
    ],
    template: { uses: 'notify', with: { channel: 'default', message: 'Done' } },
  },
];

export function actionFor(uses: string | undefined): ActionDef | undefined {
  return ACTIONS.find((a) => a.uses === (uses ?? 'shell'));
}
