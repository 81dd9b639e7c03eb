// The dedicated Web Worker that runs this tab's Netabase node: only a
// worker gets synchronous access to the origin private file system, and
// the node's work never competes with the page for its thread.
import init, { start } from './pkg/browser_app.js';

const native = new URL(self.location).searchParams.get('native');
let app;
const ready = (async () => {
    await init();
    app = await start(native, (items) => postMessage({ kind: 'items', items }));
    postMessage({ kind: 'ready', peer: app.peer_id() });
})().catch((error) => postMessage({ kind: 'error', message: String(error) }));

onmessage = async ({ data }) => {
    await ready;
    try {
        if (data.op === 'add') await app.add(data.text);
        if (data.op === 'remove') await app.remove(data.id);
    } catch (error) {
        postMessage({ kind: 'error', message: String(error) });
    }
};
