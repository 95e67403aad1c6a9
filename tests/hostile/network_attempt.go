// Tries every way out to the network: TCP to a public address, to the host's loopback port given
// as the first argument (or on stdin), UDP DNS, and a name lookup. Prints ESCAPED for any success.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	port := ""
	if len(os.Args) > 1 {
		port = os.Args[1]
	} else if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); err == nil || line != "" {
		port = strings.TrimSpace(line)
	}
	targets := []string{"1.1.1.1:80", "8.8.8.8:53", "[2606:4700:4700::1111]:80"}
	if port != "" {
		targets = append(targets, "127.0.0.1:"+port, "[::1]:"+port)
	}
	for _, t := range targets {
		if c, err := net.DialTimeout("tcp", t, 2*time.Second); err == nil {
			fmt.Println("ESCAPED tcp", t)
			c.Close()
		} else {
			fmt.Println("denied tcp", t, err)
		}
	}
	if c, err := net.DialTimeout("udp", "8.8.8.8:53", time.Second); err == nil {
		// A UDP "connect" always succeeds locally; only a reply proves a way out.
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"))
		buf := make([]byte, 512)
		if n, err := c.Read(buf); err == nil && n > 0 {
			fmt.Println("ESCAPED udp reply")
		} else {
			fmt.Println("denied udp", err)
		}
		c.Close()
	} else {
		fmt.Println("denied udp", err)
	}
	if addrs, err := net.LookupHost("example.com"); err == nil && len(addrs) > 0 {
		fmt.Println("ESCAPED dns", addrs)
	} else {
		fmt.Println("denied dns", err)
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			fmt.Println("ESCAPED interface up:", i.Name)
		}
	}
}
