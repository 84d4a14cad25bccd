#!/usr/bin/env python3
"""A minimal OCI shim, as containerd-shim-runc-v2 drives runc: it is a child subreaper,
runs `RUNTIME create --pid-file` (with --console-socket for a terminal container, receiving
the pty master over SCM_RIGHTS), then start, state, exec --detach --pid-file, kill, delete,
and reaps the processes named in the pid files itself (waitpid) to learn exit statuses.

usage: oci-shim.py RUNTIME ROOT BUNDLE ID terminal|plain
Prints one JSON object with what it saw.
"""
import ctypes, json, os, select, socket, subprocess, sys, time

runtime, root, bundle, cid, mode = sys.argv[1:6]
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
work = os.path.dirname(os.path.abspath(bundle))
log = os.path.join(work, 'runtime-log.json')
out = {}

T0 = time.time()
def rt(*args, **kw):
    out.setdefault('timeline', []).append([args[0], round(time.time() - T0, 2)])
    # The container's (or exec'd process's) stdio is what the runtime command gets: files here,
    # as a shim gives pipes it does not wait on (a pipe we read to EOF would stay open).
    errfile = None
    if args[0] in ('create', 'exec'):
        errfile = os.path.join(work, args[0] + '.err')
        kw['stderr'] = open(errfile, 'w')
    else:
        kw['stderr'] = subprocess.PIPE
    kw.setdefault('stdout', subprocess.PIPE)
    r = subprocess.run([runtime, '--root', root, '--log', log, '--log-format', 'json', *args], text=True, timeout=60, **kw)
    return r.returncode, r.stdout, open(errfile).read() if errfile else r.stderr

def wait_status(pid, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        got, st = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(st)
        time.sleep(0.02)
    return 'timeout'

master = None
args = ['create', '--bundle', bundle, '--pid-file', os.path.join(work, 'init.pid')]
if mode == 'terminal':
    sock_path = os.path.join(work, 'console.sock')
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    args += ['--console-socket', sock_path]
    proc = subprocess.Popen([runtime, '--root', root, '--log', log, '--log-format', 'json', *args, cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    srv.settimeout(30)
    conn, _ = srv.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    out['console_name'] = msg.decode()
    out['master_is_tty'] = os.isatty(master)
    stdout, stderr = proc.communicate(timeout=60)
    out['create'] = [proc.returncode, stderr]
else:
    code, _, err = rt(*args, cid, stdin=subprocess.DEVNULL, stdout=open(os.path.join(work, 'init.out'), 'w'))
    out['create'] = [code, err]

init_pid = int(open(os.path.join(work, 'init.pid')).read())
out['init_pid_alive'] = os.path.exists(f'/proc/{init_pid}')
# The pid is our child now (reparented to us, the subreaper), as the shim's waitpid needs.
out['init_ppid_is_shim'] = int(open(f'/proc/{init_pid}/stat').read().rsplit(')', 1)[1].split()[1]) == os.getpid()
out['state_created'] = json.loads(rt('state', cid)[1])
code, _, err = rt('start', cid)
out['start'] = [code, err]
out['state_running'] = json.loads(rt('state', cid)[1])

if master is not None:
    # The guest's console is the other end of the pty we were given: talk to its shell.
    os.write(master, b'[ -t 0 ] && echo tty=yes $((6*7))\n')
    buf = b''
    end = time.time() + 20
    while b'tty=yes 42' not in buf and time.time() < end:
        if select.select([master], [], [], 0.5)[0]:
            buf += os.read(master, 4096)
    out['console_output_ok'] = b'tty=yes 42' in buf
    out['console_output'] = buf.decode(errors='replace')[-300:]

# exec --detach: the pid file names the process whose exit status is the exec'd process's.
proc_json = os.path.join(work, 'exec-process.json')
json.dump({'args': ['sh', '-c', 'echo exec-out; exit 9'], 'cwd': '/', 'env': ['PATH=/bin']}, open(proc_json, 'w'))
code, _, err = rt('exec', '--detach', '--pid-file', os.path.join(work, 'exec.pid'), '--process', proc_json, cid,
                  stdin=subprocess.DEVNULL, stdout=open(os.path.join(work, 'exec.out'), 'w'))
out['exec'] = [code, err]
if code == 0:
    exec_pid = int(open(os.path.join(work, 'exec.pid')).read())
    out['exec_status'] = wait_status(exec_pid)
    out['exec_output'] = open(os.path.join(work, 'exec.out')).read()

code, _, err = rt('kill', cid, 'KILL')
out['kill'] = [code, err]
out['init_status'] = wait_status(init_pid)
out['state_stopped'] = json.loads(rt('state', cid)[1])
code, _, err = rt('delete', cid)
out['delete'] = [code, err]
code, _, err = rt('state', cid)
out['state_after_delete'] = [code, err]
print(json.dumps(out))
