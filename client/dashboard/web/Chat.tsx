import { useEffect, useState } from "preact/hooks";

interface Message {
  role: "user" | "assistant";
  content: string;
}

/** Tokens a reply may have (the gateway's route is a demo: keep answers short). */
const MAX_TOKENS = 64;

/** Reads an OpenAI-style stream of server-sent events, calling `onDelta` with each piece of text. */
async function readStream(body: ReadableStream<Uint8Array>, onDelta: (text: string) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = event.startsWith("data: ") ? event.slice(6) : "";
      if (data === "" || data === "[DONE]") continue;
      const chunk = JSON.parse(data) as { choices?: { delta?: { content?: string } }[]; error?: { message: string } };
      if (chunk.error !== undefined) throw new Error(chunk.error.message);
      const text = chunk.choices?.[0]?.delta?.content;
      if (text !== undefined) onDelta(text);
    }
  }
}

/** A chat with the gateway's model over /v1/chat/completions (streamed), same origin as the page. */
export function Chat() {
  const [model, setModel] = useState<string | undefined>(undefined);
  const [messages, setMessages] = useState<Message[]>([]);
  const [draft, setDraft] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);

  useEffect(() => {
    fetch("/v1/models")
      .then(async (r) => {
        const body = (await r.json()) as { data?: { id: string }[]; error?: { message: string } };
        if (!r.ok) throw new Error(body.error?.message ?? `HTTP ${r.status}`);
        const first = body.data?.[0]?.id;
        if (first === undefined) throw new Error("the gateway serves no model right now (no route covers it)");
        setModel(first);
      })
      .catch((err: Error) => setError(`no gateway: ${err.message}`));
  }, []);

  const send = async (e: Event): Promise<void> => {
    e.preventDefault();
    const text = draft.trim();
    if (text === "" || model === undefined || busy) return;
    const history: Message[] = [...messages, { role: "user", content: text }];
    setMessages([...history, { role: "assistant", content: "" }]);
    setDraft("");
    setBusy(true);
    setError(undefined);
    try {
      const r = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, messages: history, stream: true, max_tokens: MAX_TOKENS }),
      });
      if (!r.ok || r.body === null) {
        const body = (await r.json().catch(() => ({}))) as { error?: { message: string } };
        throw new Error(body.error?.message ?? `HTTP ${r.status}`);
      }
      await readStream(r.body, (delta) =>
        setMessages((m) => m.map((msg, i) => (i === m.length - 1 ? { ...msg, content: msg.content + delta } : msg))),
      );
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="chat">
      <div class="messages" data-testid="chat-messages">
        {messages.length === 0 && <p class="muted">Ask {model ?? "the model"} something: the answer streams through the gateway and its servers.</p>}
        {messages.map((m, i) => (
          <div key={i} class={`msg ${m.role}`} data-testid={`chat-${m.role}`}>
            {m.content === "" && busy ? "…" : m.content}
          </div>
        ))}
      </div>
      {error !== undefined && <p class="error" data-testid="chat-error">{error}</p>}
      <form onSubmit={(e) => void send(e)}>
        <input
          data-testid="chat-input"
          value={draft}
          onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
          placeholder={model === undefined ? "waiting for the gateway…" : `message ${model}`}
          disabled={model === undefined}
          maxLength={4000}
        />
        <button type="submit" disabled={busy || model === undefined}>
          {busy ? "…" : "Send"}
        </button>
      </form>
    </div>
  );
}
