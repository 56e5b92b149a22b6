using System.Net;
using MetaMae.Actors.Cluster;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>A node's ops port: liveness, readiness and the run's figures in Prometheus text format.</summary>
public sealed class OpsEndpointSpecs : TempDirTest
{
    [Fact]
    public async Task The_ops_port_answers_alive_ready_and_exports_the_runs_figures_for_prometheus()
    {
        await using var cluster = new InProcessCluster();
        await cluster.Add(Roles.All);
        int port = Cli.Bench.Loopback.FreePort();
        using var ops = new OpsEndpoint(cluster.Seed, port, "127.0.0.1");
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(OpsEndpoint.AlivePath)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(OpsEndpoint.ReadyPath)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/nothing")).StatusCode);

        var config = TestRuns.Tiny(Root, steps: 8, every: 4, evaluate: true);
        config = config with { Evaluation = config.Evaluation with { Epochs = 2 } };
        var result = await cluster.Run(0, config, "observed", TimeSpan.FromMinutes(3));
        Assert.True(result.Status == RunStatus.Completed, result.Error);
        // The last step's figures may reach the node's gauges just after the run's end: wait for them (bounded).
        var metrics = await MetricsWhen(http, m => m.Contains("metamae_step{run=\"observed\"} 8", StringComparison.Ordinal) &&
                                                   m.Contains("metamae_probe{run=\"observed\"", StringComparison.Ordinal));
        Assert.Contains("metamae_step{run=\"observed\"} 8", metrics);
        Assert.Contains("metamae_steps_total{run=\"observed\"} 8", metrics);
        Assert.Matches("metamae_probe\\{run=\"observed\",dataset=\"fashion-mnist\",metric=\"accuracy\"\\} 0\\.\\d+", metrics);
        Assert.Contains("metamae_samples_per_second{run=\"observed\"}", metrics);
        Assert.Contains("# TYPE metamae_allreduce_seconds gauge", metrics);
    }

    [Fact]
    public async Task Retrained_steps_are_counted_apart_and_a_finished_runs_series_leave_metrics_after_the_retention()
    {
        int port = Cli.Bench.Loopback.FreePort();
        var system = Akka.Actor.ActorSystem.Create("ops-retention");
        try
        {
            using var ops = new OpsEndpoint(system, port, "127.0.0.1");
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            var run = $"retention-{Guid.NewGuid():N}";
            StepReport Step(long s) => new(run, s, 10, 0.5, 0.4, null, null, 0.1, 1e-3, 0.2, 0.01, 16, new StreamPosition(0, s * 16));
            RunMetrics.Started(run);
            RunMetrics.Record(Step(1));
            RunMetrics.Record(Step(2));
            RunMetrics.Record(Step(2), retrained: true); // after a resume from step 1
            RunMetrics.Probe.WithLabels(run, "fashion-mnist", "accuracy").Set(0.5);
            var metrics = await http.GetStringAsync(OpsEndpoint.MetricsPath);
            Assert.Contains($"metamae_steps_total{{run=\"{run}\"}} 2", metrics);
            Assert.Contains($"metamae_steps_retrained_total{{run=\"{run}\"}} 1", metrics);
            RunMetrics.Finished(run, after: TimeSpan.FromMilliseconds(200));
            var gone = await MetricsWhen(http, m => !m.Contains(run, StringComparison.Ordinal));
            Assert.DoesNotContain(run, gone);
        }
        finally
        {
            await system.Terminate();
        }
    }

    private static async Task<string> MetricsWhen(HttpClient http, Func<string, bool> done)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string metrics;
        while (!done(metrics = await http.GetStringAsync(OpsEndpoint.MetricsPath)) && clock.Elapsed < TimeSpan.FromSeconds(60))
            await Task.Delay(50);
        return metrics;
    }

    [Fact]
    public async Task Alive_fails_the_moment_the_node_is_downed()
    {
        await using var cluster = new InProcessCluster();
        await cluster.Add(Roles.Data);
        int port = Cli.Bench.Loopback.FreePort();
        using var ops = new OpsEndpoint(cluster.Seed, port, "127.0.0.1");
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(OpsEndpoint.AlivePath)).StatusCode);

        var self = Akka.Cluster.Cluster.Get(cluster.Seed);
        self.Down(self.SelfAddress);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        HttpStatusCode status;
        while ((status = (await http.GetAsync(OpsEndpoint.AlivePath)).StatusCode) == HttpStatusCode.OK && clock.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(20);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
    }

    [Fact]
    public void Akkas_stdout_lines_are_written_as_the_structured_logger_writes_events()
    {
        var output = new StringWriter();
        var writer = new Cli.JsonLinesWriter(output);
        writer.WriteLine("[WARNING][12/06/2026 02:33:25.128Z][Thread 0005][akka://metamae/system/cluster] Cluster Node - Shutting down");
        writer.WriteLine("plain text from a library");
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(("Warning", "Akka", "Cluster Node - Shutting down"),
            (lines[0].GetProperty("LogLevel").GetString(), lines[0].GetProperty("Category").GetString(), lines[0].GetProperty("Message").GetString()));
        Assert.Equal("akka://metamae/system/cluster", lines[0].GetProperty("State").GetProperty("Source").GetString());
        Assert.Equal(5, lines[0].GetProperty("State").GetProperty("Thread").GetInt32());
        Assert.Equal(("stdout", "plain text from a library"), (lines[1].GetProperty("Category").GetString(), lines[1].GetProperty("Message").GetString()));
    }

    [Fact]
    public void With_json_logs_a_node_writes_one_json_object_per_line_and_leaves_on_SIGTERM()
    {
        var psi = MetamaeCommand.StartInfo("node", "--roles", "coordinator", "--port", "0", "--log-format", "json");
        using var node = System.Diagnostics.Process.Start(psi)!;
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        node.OutputDataReceived += (_, e) => { if (!string.IsNullOrEmpty(e.Data)) lines.Enqueue(e.Data); };
        node.BeginOutputReadLine();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (!lines.Any(l => l.Contains("node up: ", StringComparison.Ordinal)) && clock.Elapsed < TimeSpan.FromSeconds(60) && !node.HasExited)
                Thread.Sleep(50);
            ProcessRuns.Signal(node, "TERM");
            Assert.True(node.WaitForExit(TimeSpan.FromSeconds(60)), "the node did not leave on SIGTERM");
            node.WaitForExit();
            Assert.Equal(0, node.ExitCode);
        }
        finally
        {
            if (!node.HasExited) node.Kill(entireProcessTree: true);
        }
        Assert.True(lines.Count >= 3, string.Join("\n", lines));
        foreach (var line in lines)
        {
            Assert.True(line.StartsWith('{') && line.EndsWith('}'), $"not a JSON object: {line}");
            using var json = System.Text.Json.JsonDocument.Parse(line); // every line, not only most
            Assert.True(json.RootElement.TryGetProperty("LogLevel", out _), line);
            Assert.True(json.RootElement.TryGetProperty("Message", out var message), line);
            // The event's own text, not Akka's "[INFO][time][Thread][source]" line inside it: where it came from is in State.
            Assert.DoesNotMatch(@"^\[(DEBUG|INFO|WARNING|ERROR)\]", message.GetString()!);
        }
        Assert.Contains(lines, l => System.Text.Json.JsonDocument.Parse(l).RootElement.TryGetProperty("State", out var state)
                                    && state.TryGetProperty("Source", out var source) && source.GetString()!.Contains("akka://metamae", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("node leaving the cluster", StringComparison.Ordinal));
    }
}
