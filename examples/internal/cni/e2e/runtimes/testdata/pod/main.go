// Command pod is the one program of the test image the runtime tests build:
// a static binary (CGO_ENABLED=0) that is both the pause process of a
// sandbox and the test container, and that writes the image holding itself,
// because the tests have no registry to pull from.
//
//	pod pause                 wait for SIGTERM or SIGINT, then exit 0
//	pod ping ADDR [SECONDS]   ICMP echo to ADDR until a reply (exit 0) or the timeout (exit 1)
//	pod addrs                 print the global unicast addresses of every interface, one a line
//	pod image -o FILE NAME... write a docker-archive image tarball tagged NAME with this
//	                          binary as /pod, entrypoint ["/pod"], cmd ["pause"]
//
// The archive is the format of `docker save`, which both `ctr images
// import` and `podman load` read.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/internal/probe"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: pod pause|ping|addrs|image")
	}
	switch os.Args[1] {
	case "pause":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
	case "ping":
		ping(os.Args[2:])
	case "addrs":
		addrs()
	case "image":
		image(os.Args[2:])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "pod:", msg)
	os.Exit(1)
}

func ping(args []string) {
	if len(args) < 1 {
		fail("ping ADDR [SECONDS]")
	}
	dst, err := netip.ParseAddr(args[0])
	if err != nil {
		fail(err.Error())
	}
	secs := 10
	if len(args) > 1 {
		if secs, err = strconv.Atoi(args[1]); err != nil {
			fail(err.Error())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	from, err := probe.Ping(ctx, "", dst)
	if err != nil {
		fail(err.Error())
	}
	fmt.Printf("reply from %s\n", from)
}

func addrs() {
	ifs, err := net.Interfaces()
	if err != nil {
		fail(err.Error())
	}
	for _, i := range ifs {
		as, err := i.Addrs()
		if err != nil {
			fail(err.Error())
		}
		for _, a := range as {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsGlobalUnicast() {
				fmt.Printf("%s %s\n", i.Name, p)
			}
		}
	}
}

func image(args []string) {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	out := fs.String("o", "", "output file")
	fs.Parse(args)
	if *out == "" || fs.NArg() == 0 {
		fail("image -o FILE NAME...")
	}
	self, err := os.Executable()
	if err != nil {
		fail(err.Error())
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		fail(err.Error())
	}
	b, err := archive(bin, fs.Args())
	if err != nil {
		fail(err.Error())
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fail(err.Error())
	}
}

// archive returns a docker-archive with one layer holding bin as /pod.
func archive(bin []byte, tags []string) ([]byte, error) {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	epoch := time.Unix(0, 0)
	if err := lw.WriteHeader(&tar.Header{Name: "pod", Mode: 0o755, Size: int64(len(bin)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := lw.Write(bin); err != nil {
		return nil, err
	}
	if err := lw.Close(); err != nil {
		return nil, err
	}
	layerSum := sha256.Sum256(layer.Bytes())
	layerHex := hex.EncodeToString(layerSum[:])
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": []string{"/pod"},
			"Cmd":        []string{"pause"},
			"Env":        []string{"PATH=/"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
	})
	if err != nil {
		return nil, err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": tags, "Layers": []string{layerHex + "/layer.tar"},
	}})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		data []byte
	}{{layerHex + "/layer.tar", layer.Bytes()}, {configName, config}, {"manifest.json", manifest}} {
		if err := w.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
