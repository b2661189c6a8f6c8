// kstatus-check reads Kubernetes objects (a JSON list) on stdin and prints the verdict of kstatus — the status
// library Flux and `helm --wait` use (sigs.k8s.io/cli-utils/pkg/kstatus/status) — for each, as JSON lines.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	var objects []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, raw := range objects {
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(raw); err != nil { // as the API machinery reads objects: integers stay int64
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		res, err := status.Compute(object)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out, _ := json.Marshal(map[string]string{"status": res.Status.String(), "message": res.Message})
		fmt.Println(string(out))
	}
}
