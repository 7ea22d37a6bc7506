import type { CompletionContext, CompletionResult } from '@codemirror/autocomplete';
import { yaml } from '@codemirror/lang-yaml';
import { EditorState } from '@codemirror/state';
import { EditorView } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { useEffect, useRef } from 'react';
import type { Completions } from './yamlComplete';

/**
 * CodeMirror 6 with YAML highlighting; `value` in, `onChange` out, kept in sync.
 * `complete` suggests keys and values as you type (Ctrl-Space asks explicitly).
 */
export default function YamlEditor({
  value,
  onChange,
  label,
  complete,
}: {
  value: string;
  onChange: (text: string) => void;
  label: string;
  complete?: (text: string, pos: number) => Completions | null;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const change = useRef(onChange);
  change.current = onChange;
  const completer = useRef(complete);
  completer.current = complete;

  useEffect(() => {
    const source = (ctx: CompletionContext): CompletionResult | null => {
      const found = completer.current?.(ctx.state.doc.toString(), ctx.pos);
      if (!found || !found.options.length) return null;
      if (!ctx.explicit && found.from === ctx.pos && !ctx.matchBefore(/:\s+$/)) return null;
      return {
        from: found.from,
        options: found.options.map((o) => ({ label: o.label, detail: o.detail, info: o.info, apply: o.apply, type: o.apply.endsWith(': ') ? 'property' : 'enum' })),
        validFor: /^[\w.-]*$/,
      };
    };
    const v = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: value,
        extensions: [
          basicSetup,
          yaml(),
          EditorState.languageData.of(() => [{ autocomplete: source }]),
          EditorView.contentAttributes.of({ 'aria-label': label }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) change.current(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => v.destroy();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
    }
  }, [value]);

  return <div className="yaml-editor" ref={host} />;
}
