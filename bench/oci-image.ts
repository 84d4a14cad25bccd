/**
 * A busybox-static root filesystem and an OCI image archive of it (for `ctr image import`):
 * shared by the OCI runtime tests (test/oci-helpers.ts) and the `ctr run` benchmark.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'echo', 'sleep', 'cat', 'ls', 'id', 'hostname', 'env', 'pwd', 'true', 'false', 'seq', 'grep', 'wc', 'head', 'tail', 'ps'];

/** A root filesystem in `dir`: /bin/busybox (static) with applet links, and empty /tmp /proc /dev /etc. */
export function makeRootfs(dir: string): string {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  for (const d of ['tmp', 'proc', 'dev', 'etc', 'sys', 'root']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  fs.writeFileSync(path.join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  return dir;
}

/**
 * An OCI image layout archive (oci-layout, index.json, blobs) of the busybox rootfs, named
 * `name` (e.g. docker.io/library/sv-busybox:latest), for `ctr image import`. Returns its path.
 */
export function makeImageArchive(dir: string, name: string): string {
  const rootfs = makeRootfs(path.join(dir, 'image-rootfs'));
  const layerTar = path.join(dir, 'layer.tar');
  execFileSync('tar', ['-C', rootfs, '-cf', layerTar, '.']);
  const layout = path.join(dir, 'layout');
  fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  const put = (data: Buffer) => {
    const h = createHash('sha256').update(data).digest('hex');
    fs.writeFileSync(path.join(layout, 'blobs', 'sha256', h), data);
    return { digest: `sha256:${h}`, size: data.length };
  };
  const layer = put(fs.readFileSync(layerTar));
  const config = put(Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'], Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [layer.digest] },
  })));
  const manifest = put(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  })));
  fs.writeFileSync(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': 'latest' } }],
  }));
  const out = path.join(dir, 'image.tar');
  execFileSync('tar', ['-C', layout, '-cf', out, '.']);
  return out;
}

