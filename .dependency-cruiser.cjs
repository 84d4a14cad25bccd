/**
 * The layering rules of snapvisor (docs/architecture.md, "Layers"), checked by
 * dependency-cruiser in `npm test` (`npm run lint:layers`). A violation fails the run.
 *
 *   cli/ ─▶ snapshots/ ─▶ src/sandbox (composition root) ─▶ src/syscalls ─▶ src/{kernel,mm,vfs,ipc,net,loader} ─▶ src/abi
 *                                         └──────────────▶ platforms/ (interfaces; implementations only from the root)
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'platforms-know-no-kernel',
      comment: 'platforms/ only execute guest code: they must not import the kernel, the store or the CLI.',
      severity: 'error',
      from: { path: '^platforms/' },
      to: { path: '^(src|snapshots|cli)/' },
    },
    {
      name: 'kernel-knows-no-store-or-cli',
      comment: 'src/ must not import snapshots/ or cli/ (the store and the CLI sit above the kernel).',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(snapshots|cli)/' },
    },
    {
      name: 'kernel-knows-no-syscall-layer',
      comment: 'The kernel receives its syscall table (compare gVisor RegisterSyscallTable): src/{kernel,mm,vfs,ipc,net,loader,abi,files} must not import src/syscalls/.',
      severity: 'error',
      from: { path: '^src/(kernel|mm|vfs|ipc|net|loader|abi|files)/' },
      to: { path: '^src/syscalls/' },
    },
    {
      name: 'only-the-root-composes',
      comment: 'Only the composition root (src/sandbox/) chooses implementations: the rest of src/ sees platforms/ through its interfaces (platforms/platform.ts, platforms/host-services.ts).',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/sandbox/' },
      to: { path: '^platforms/', pathNot: '^platforms/(platform|host-services)\\.ts$' },
    },
    {
      name: 'koffi-only-in-platforms',
      comment: 'Host FFI (koffi) is the platforms\' and the host runtime\'s (platforms/host/) business only.',
      severity: 'error',
      from: { pathNot: '^platforms/' },
      to: { path: '(^|/)node_modules/koffi/' },
    },
    {
      name: 'verify-worker-loads-no-native-addon',
      comment: 'The restore\'s page verifier and the checkpoint\'s page worker (worker threads, terminated when the sandbox ends or a checkpoint fails) must load no native addon: a worker terminated while koffi (or cbor-extract) initialises or declares functions aborts the whole process (FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw).',
      severity: 'error',
      from: { path: '^snapshots/(verify-worker|page-crunch-worker)\\.ts$' },
      to: { path: '(^|/)node_modules/(koffi|cbor-x|cbor-extract|level|classic-level)/', reachable: true },
    },
    {
      name: 'no-value-cycles',
      comment: 'No import cycle among value imports (a module must import on its own, first). Type-only imports may cycle.',
      severity: 'error',
      from: {},
      to: {
        dependencyTypesNot: ['type-only'],
        circular: true,
        viaOnly: { dependencyTypesNot: ['type-only'] },
      },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve is a broken build.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
