// The official openai Node SDK through the gateway: upload, list with auto-pagination (both orders),
// retrieve, download, delete. Reads its settings as JSON from argv[2], prints what it saw as JSON.
import { createHash } from "node:crypto";
import OpenAI, { toFile } from "openai";

const settings = JSON.parse(process.argv[2]);
const client = new OpenAI({
  baseURL: settings.baseURL,
  apiKey: settings.apiKey,
  defaultHeaders: settings.headers,
  maxRetries: 0,
});

async function walk(order) {
  const ids = [];
  let pages = 0;
  const first = await client.files.list({ limit: settings.limit, order });
  for await (const page of first.iterPages()) {
    pages += 1;
    ids.push(...page.data.map((file) => file.id));
  }
  return { ids, pages };
}

async function download(id) {
  try {
    const response = await client.files.content(id);
    const bytes = Buffer.from(await response.arrayBuffer());
    return { sha256: createHash("sha256").update(bytes).digest("hex") };
  } catch (error) {
    if (!(error instanceof OpenAI.APIError)) throw error;
    return { status: error.status, code: error.code };
  }
}

const content = Buffer.from(settings.content, "base64");
const created = await client.files.create({ file: await toFile(content, settings.filename), purpose: settings.purpose });
const result = {
  created,
  desc: await walk("desc"),
  asc: await walk("asc"),
  retrieved: await client.files.retrieve(created.id),
  download: await download(created.id),
  deleted: await client.files.delete(created.id),
};
process.stdout.write(JSON.stringify(result));
