;; snapvisor: the per-page loops of a pack piece (snapshots/piece-finder.ts says why and how it is built).
(module
  ;; A pack piece's pages at 0 (1 MiB: 256 pages), a kind byte per page at 0x100000 (0 zero,
  ;; 1 data), a mask byte per page at 0x100100 (1: a host-file page, not in the chunk), and
  ;; room for the gathered chunk at 0x110000 (1 MiB).
  (memory (export "memory") 33 33)
  ;; Kinds of pages [from, to): 1 where a page has a non-zero byte. Returns how many have.
  (func (export "classify") (param $from i32) (param $to i32) (result i32)
    (local $i i32) (local $p i32) (local $end i32) (local $nz i32) (local $count i32)
    (local.set $i (local.get $from))
    (block $done
      (loop $pages
        (br_if $done (i32.ge_u (local.get $i) (local.get $to)))
        (local.set $p (i32.shl (local.get $i) (i32.const 12)))
        (local.set $end (i32.add (local.get $p) (i32.const 4096)))
        (local.set $nz (i32.const 0))
        (block $found
          (loop $words
            (if (v128.any_true
                  (v128.or
                    (v128.or (v128.load (local.get $p)) (v128.load offset=16 (local.get $p)))
                    (v128.or (v128.load offset=32 (local.get $p)) (v128.load offset=48 (local.get $p)))))
              (then (local.set $nz (i32.const 1)) (br $found)))
            (local.set $p (i32.add (local.get $p) (i32.const 64)))
            (br_if $words (i32.lt_u (local.get $p) (local.get $end)))))
        (i32.store8 offset=1048576 (local.get $i) (local.get $nz))
        (local.set $count (i32.add (local.get $count) (local.get $nz)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $pages)))
    (local.get $count))
  ;; Copy the data pages of [0, n) that the mask does not mark, in order, to 0x110000. Returns how many.
  (func (export "gather") (param $n i32) (result i32)
    (local $i i32) (local $k i32)
    (block $done
      (loop $pages
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.and
              (i32.load8_u offset=1048576 (local.get $i))
              (i32.eqz (i32.load8_u offset=1048832 (local.get $i))))
          (then
            (memory.copy
              (i32.add (i32.const 1114112) (i32.shl (local.get $k) (i32.const 12)))
              (i32.shl (local.get $i) (i32.const 12))
              (i32.const 4096))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $pages)))
    (local.get $k)))
