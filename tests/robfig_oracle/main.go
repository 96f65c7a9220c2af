// Command robfig_oracle answers cron questions with github.com/robfig/cron v3,
// the library KEDA's cron scaler evaluates `start` and `end` with, so that the
// Python port in scaler/schedule.py can be checked against the real thing.
//
// One query per input line, fields separated by tabs; one answer line each:
//
//	spec                     -> "ok", or "error: " and robfig's message, quoted
//	spec, zone, unix         -> Next(unix in zone) as Unix seconds
//	                            (the zero time prints as -62135596800)
//	start, end, zone, unix   -> "1" or "0": KEDA's cron activity at that instant
//
// A field that starts with a double quote is a Go string literal, so that specs
// may hold tabs. unix is decimal seconds with an optional fraction of up to 9
// digits. The parser is the one KEDA builds: Minute | Hour | Dom | Month | Dow.
//
// Build (GOPATH mode, robfig/cron from the Debian package):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o tests/.oracle/robfig_oracle ./tests/robfig_oracle
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron"
)

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

var (
	schedules = map[string]cron.Schedule{}
	locations = map[string]*time.Location{}
)

func schedule(spec string) (cron.Schedule, error) {
	if s, ok := schedules[spec]; ok {
		return s, nil
	}
	s, err := parser.Parse(spec)
	if err != nil {
		return nil, err
	}
	schedules[spec] = s
	return s, nil
}

func location(name string) (*time.Location, error) {
	if l, ok := locations[name]; ok {
		return l, nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations[name] = l
	return l, nil
}

func instant(text string) (time.Time, error) {
	whole, frac, _ := strings.Cut(text, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var nsec int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if nsec, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, err
		}
	}
	return time.Unix(sec, nsec), nil
}

// parse recovers from robfig's panic on a "TZ=" prefix without a space.
func parse(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return schedule(spec)
}

func answer(fields []string) string {
	switch len(fields) {
	case 1:
		if _, err := parse(fields[0]); err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		return "ok"
	case 3:
		s, err := parse(fields[0])
		if err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		loc, err := location(fields[1])
		if err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		t, err := instant(fields[2])
		if err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		return strconv.FormatInt(s.Next(t.In(loc)).Unix(), 10)
	case 4:
		start, err := parse(fields[0])
		if err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		end, err := parse(fields[1])
		if err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		loc, err := location(fields[2])
		if err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		t, err := instant(fields[3])
		if err != nil {
			return "error: " + strconv.Quote(err.Error())
		}
		// KEDA's rule (cron_scaler.go GetMetricsAndActivity, v2.16 and later),
		// with one clock reading used for "now" and for both searches.
		now := t.In(loc)
		nextStart, nextEnd := start.Next(now), end.Next(now)
		var active bool
		if nextStart.Before(nextEnd) {
			active = now.After(nextStart) && now.Before(nextEnd)
		} else {
			active = now.After(nextStart) || now.Before(nextEnd)
		}
		if active {
			return "1"
		}
		return "0"
	}
	return fmt.Sprintf("error: expected 1, 3 or 4 tab-separated fields, got %d", len(fields))
}

func unquote(fields []string) ([]string, error) {
	for i, f := range fields {
		if strings.HasPrefix(f, `"`) {
			text, err := strconv.Unquote(f)
			if err != nil {
				return nil, fmt.Errorf("field %d: %w", i+1, err)
			}
			fields[i] = text
		}
	}
	return fields, nil
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer out.Flush()
	for {
		line, err := in.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line != "" || err == nil {
			if fields, err := unquote(strings.Split(line, "\t")); err != nil {
				fmt.Fprintln(out, "error: "+strconv.Quote(err.Error()))
			} else {
				fmt.Fprintln(out, answer(fields))
			}
		}
		if err != nil {
			return
		}
		// Answer at once when the caller waits for this line; batch otherwise.
		if in.Buffered() == 0 {
			out.Flush()
		}
	}
}
