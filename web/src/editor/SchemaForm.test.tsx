import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { SchemaForm } from './SchemaForm';
import { fieldsFor, type JsonSchema, validateWith } from './schemaForm';

const SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['channel'],
  properties: {
    channel: { type: 'string', description: 'Where to send it.' },
    retries: { type: 'integer', default: 3 },
    level: { enum: ['info', 'warning', 'error'] },
    tags: { type: 'array', items: { type: 'string' } },
  },
};

function Form({ values, onSet }: { values: Record<string, unknown>; onSet: (p: string[], v: unknown) => void }) {
  return <SchemaForm fields={fieldsFor(SCHEMA, SCHEMA, ['with'])} values={values} errors={Object.fromEntries(Object.entries(validateWith(SCHEMA, values)).map(([k, v]) => [`with.${k}`, v]))} onSet={onSet} idPrefix="t" />;
}

describe('SchemaForm', () => {
  it('labels every field, marks required ones, shows help, defaults and problems', () => {
    render(<Form values={{ level: 'debug' }} onSet={() => undefined} />);
    const channel = screen.getByLabelText('Channel (required)');
    expect(channel).toHaveAttribute('aria-invalid', 'true');
    expect(channel).toHaveAccessibleDescription('Where to send it. required');
    expect(screen.getByLabelText('Retries')).toHaveAttribute('placeholder', 'default: 3');
    expect(screen.getByLabelText('Level')).toHaveAccessibleDescription('one of: info, warning, error');
    expect(screen.getByLabelText(/Tags/).tagName).toBe('TEXTAREA');
  });

  it('writes typed values and keeps what does not parse out of the document', async () => {
    const onSet = vi.fn();
    render(<Form values={{ channel: 'ops' }} onSet={onSet} />);
    await userEvent.type(screen.getByLabelText('Retries'), '5{Enter}');
    expect(onSet).toHaveBeenLastCalledWith(['with', 'retries'], 5);
    await userEvent.type(screen.getByLabelText('Retries'), 'x{Enter}');
    expect(screen.getByText('expected a whole number')).toBeInTheDocument();
    expect(onSet).toHaveBeenCalledTimes(1);
    await userEvent.selectOptions(screen.getByLabelText('Level'), 'warning');
    expect(onSet).toHaveBeenLastCalledWith(['with', 'level'], 'warning');
    await userEvent.type(screen.getByLabelText(/Tags/), '[[a, b]');
    await userEvent.tab();
    expect(onSet).toHaveBeenLastCalledWith(['with', 'tags'], ['a', 'b']);
  });
});
