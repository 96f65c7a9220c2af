// The byte forms in which a Go gRPC client such as KEDA sends one ScaledObjectRef.
//
// KEDA builds each scaler's ScaledObjectRef once (its ScalerMetadata a
// map[string]string filled entry by entry) and passes that message to every call;
// gRPC-go's codec marshals it with proto.Marshal, not deterministically, so the
// map is written in Go's map iteration order. This program does the same with
// the Go code protoc-gen-go generates from protos/externalscaler.proto (the test
// generates it next to this file), marshals the one message many times and
// prints each distinct form once, in hex, one per line.
//
// Usage: go_client_forms MARSHALS NAME NAMESPACE KEY=VALUE...
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "externalscaler"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		fail(fmt.Errorf("usage: %s MARSHALS NAME NAMESPACE KEY=VALUE...", os.Args[0]))
	}
	marshals, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fail(err)
	}
	metadata := make(map[string]string)
	for _, pair := range os.Args[4:] {
		key, value, found := strings.Cut(pair, "=")
		if !found {
			fail(fmt.Errorf("not KEY=VALUE: %q", pair))
		}
		metadata[key] = value
	}
	ref := &pb.ScaledObjectRef{Name: os.Args[2], Namespace: os.Args[3], ScalerMetadata: metadata}
	seen := map[string]bool{}
	for i := 0; i < marshals; i++ {
		form, err := proto.Marshal(ref)
		if err != nil {
			fail(err)
		}
		if !seen[string(form)] {
			seen[string(form)] = true
			fmt.Println(hex.EncodeToString(form))
		}
	}
}
