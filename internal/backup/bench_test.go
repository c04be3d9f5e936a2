package backup

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkPack packs trees of 16 and 64 MiB of random 4 MiB files (as
// incompressible as Prometheus's chunks, the bulk of a backup) to
// io.Discard. Its alloc-B/op is the same at both sizes: Pack's memory does
// not grow with the archive.
func BenchmarkPack(b *testing.B) {
	for _, size := range []int{16 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			dir := b.TempDir()
			for i := range size / (4 << 20) {
				writeFile(b, filepath.Join(dir, fmt.Sprintf("%06d", i)), randomBytes(b, 4<<20), 0o644, 0)
			}
			parts := []Part{{Name: "prometheus", Path: dir}}
			r := newIdentity(b).Recipient()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for range b.N {
				if _, err := Pack(context.Background(), io.Discard, r, parts, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(size)*float64(b.N)/1e6/b.Elapsed().Seconds(), "MB/s")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N), "alloc-B/op")
		})
	}
}
