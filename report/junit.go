package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/faultline/faultline/record"
)

// The JUnit XML that CI systems read: testsuites > testsuite > testcase,
// a failing check carrying a failure with the measured value and the
// threshold. junit.xsd in this package is the schema it is checked against.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func seconds(v float64) string { return fmt.Sprintf("%.3f", v) }

// JUnit writes junit.xml: one test case per check per phase (stop
// conditions too), and one for the run itself when it could not be
// carried out.
func (r *Run) JUnit(w io.Writer) error {
	res := r.Result
	suite := junitSuite{Name: res.Name, Time: seconds(r.duration()),
		Timestamp:  time.Time(res.Started).UTC().Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{{"verdict", res.Verdict}, {"seed", fmt.Sprint(res.Seed)}, {"file", res.File}, {"replay", r.Replay()}}}
	if res.TimeToRecover != nil {
		suite.Properties = append(suite.Properties, junitProperty{"time_to_recover", seconds(*res.TimeToRecover)})
	}
	class := "faultline." + res.Name
	for _, c := range res.Checks {
		from, to, _ := r.phase(c.Phase)
		tc := junitCase{Name: c.Phase + ": " + c.Condition, Classname: class, Time: seconds(to - from)}
		if c.Fired {
			tc.Name = c.Phase + ": stop when " + c.Condition
		}
		if !c.Held || c.Fired {
			msg := "measured " + cellText(c)
			kind := "steady_state"
			if c.Fired {
				msg, kind = "stop condition fired: "+msg, "stop_condition"
			}
			tc.Failure = &junitProblem{Message: msg, Type: kind, Text: c.Detail}
			suite.Failures++
		}
		suite.Cases = append(suite.Cases, tc)
	}
	if res.Verdict == record.Error || res.Verdict == Incomplete {
		suite.Cases = append(suite.Cases, junitCase{Name: "run", Classname: class, Time: seconds(r.duration()),
			Error: &junitProblem{Message: strings.Join(res.Reasons, "; "), Type: strings.ToLower(res.Verdict)}})
		suite.Errors++
	}
	suite.Tests = len(suite.Cases)
	var out strings.Builder
	if res.Hypothesis != "" {
		out.WriteString("hypothesis: " + res.Hypothesis + "\n")
	}
	fmt.Fprintf(&out, "verdict: %s\n", res.Verdict)
	for _, reason := range res.Reasons {
		out.WriteString("why: " + reason + "\n")
	}
	suite.SystemOut = out.String()
	doc := junitSuites{Name: "faultline", Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors, Time: suite.Time, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
