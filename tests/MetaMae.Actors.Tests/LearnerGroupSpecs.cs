using System.Text.Json;
using MetaMae.Actors.Cluster;
using MetaMae.Actors.Reporting;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>Data-parallel learner groups on a cluster of ActorSystems in one process, gradients crossing real remoting.</summary>
public sealed class LearnerGroupSpecs : TempDirTest
{
    /// <summary>A coordinator+data node and two learner nodes run <paramref name="config"/> to its end, completed.</summary>
    private static async Task<RunFinished> OnTwoLearners(RunSpec config, string runId, string hocon = "")
    {
        await using var cluster = new InProcessCluster { ExtraHocon = hocon };
        await cluster.Add(Roles.Coordinator, Roles.Data);
        await cluster.Add(Roles.Learner);
        await cluster.Add(Roles.Learner);
        var result = await cluster.Run(0, config, runId, TimeSpan.FromMinutes(3));
        Assert.True(result.Status == RunStatus.Completed, result.Error);
        return result;
    }

    [Theory]
    [InlineData(NumberFormat.Fp32, BatchScaling.Keep, 16, 0)]
    [InlineData(NumberFormat.Bf16, BatchScaling.Scale, 32, 0.05)] // gradients in buckets of 12,500 floats behind the backward pass
    public async Task Two_learner_nodes_train_as_one_group_whose_replicas_are_bit_identical_at_every_checkpoint(NumberFormat transfer, BatchScaling scaling, int globalBatch,
        double bucketMb)
    {
        var config = TestRuns.Tiny(Path.Combine(Root, transfer.ToString()), steps: 24, every: 8) with
        {
            Replicas = 2, GradientTransfer = transfer, BatchScaling = scaling, GradientBucketMb = bucketMb,
        };
        var result = await OnTwoLearners(config, "pair");
        Assert.Equal(24, result.Step);

        var formed = Assert.Single(MetricsFile.Lines(result.RunDirectory, "group"));
        Assert.Equal((2, globalBatch), (formed.GetProperty("replicas").GetInt32(), formed.GetProperty("global_batch").GetInt32()));
        Assert.Equal("tcp", formed.GetProperty("transport").GetString()); // the data plane, the default
        // Every checkpoint step, both replicas' parameters hashed the same (the coordinator fails the run otherwise).
        var agreed = MetricsFile.Lines(result.RunDirectory, "replicas");
        Assert.Equal(new long[] { 8, 16, 24 }, agreed.Select(a => a.GetProperty("step").GetInt64()));
        Assert.All(agreed, a => Assert.Equal(2, a.GetProperty("replicas").GetInt32()));
        // One report per step, from rank 0, for the global batch; the data position moves one global batch per step.
        var steps = RunArtifacts.ReadSteps(Path.Combine(result.RunDirectory, "metrics.jsonl"));
        Assert.Equal(Enumerable.Range(1, 24).Select(i => (long)i), steps.Keys);
        var count = Data.DatasetCatalog.Open("fashion-mnist", new Data.Readers.ReaderOptions(Data.EmbeddedData.Resolve("embedded"), Data.Split.Pretrain)).Count;
        foreach (var (k, e) in steps)
        {
            Assert.Equal(globalBatch, e.GetProperty("batch").GetInt32());
            Assert.Equal(k * globalBatch % (count / globalBatch * globalBatch), e.GetProperty("offset").GetInt64());
            // What the step waited for is part of what the collectives took (all of it without buckets).
            double waited = e.GetProperty("comm_seconds").GetDouble(), took = e.GetProperty("comm_total_seconds").GetDouble();
            Assert.True(took > 0 && (bucketMb > 0 ? waited <= took + 0.25 : waited == took), $"step {k}: waited {waited} s, took {took} s");
        }
    }

    [Fact]
    public async Task Gradients_over_the_tcp_data_plane_and_over_akka_messages_train_the_same_bits()
    {
        RunSpec Config(string dir, CollectiveTransport transport) =>
            TestRuns.Tiny(Path.Combine(Root, dir), steps: 16, every: 8) with { Replicas = 2, CollectiveTransport = transport };
        var tcp = await OnTwoLearners(Config("tcp", CollectiveTransport.Tcp), "tcp");
        var akka = await OnTwoLearners(Config("akka", CollectiveTransport.Akka), "akka");
        Assert.Equal("tcp", Assert.Single(MetricsFile.Lines(tcp.RunDirectory, "group")).GetProperty("transport").GetString());
        Assert.Equal("akka", Assert.Single(MetricsFile.Lines(akka.RunDirectory, "group")).GetProperty("transport").GetString());
        Assert.Equal(TestRuns.FinalWeights(akka.RunDirectory, 16), TestRuns.FinalWeights(tcp.RunDirectory, 16));
    }

    [Fact]
    public async Task Batches_over_the_batch_plane_with_a_connection_broken_off_train_the_same_bits_as_through_stream_references()
    {
        RunSpec Config(string dir) => TestRuns.Tiny(Path.Combine(Root, dir), steps: 16, every: 8) with { Replicas = 2 };
        var streamRefs = await OnTwoLearners(Config("refs"), "refs", "metamae.data-plane.batches = off");
        Assert.Equal(0, FailPoints.Fired("data.plane-send"));
        // One replica's connection is reset before batch 5: its learner asks for its feed again, from where it stands.
        FailPoints.Set("data.plane-send", FailAction.Throw, at: 5, times: 1);
        try
        {
            var plane = await OnTwoLearners(Config("plane"), "plane");
            Assert.Equal(1, FailPoints.Fired("data.plane-send")); // the batches went over the plane, and it broke once
            Assert.Equal(TestRuns.FinalWeights(streamRefs.RunDirectory, 16), TestRuns.FinalWeights(plane.RunDirectory, 16));
        }
        finally
        {
            FailPoints.Clear();
        }
    }

    [Fact]
    public async Task A_run_that_wants_more_replicas_than_there_are_learner_nodes_trains_with_those_there_are()
    {
        var config = TestRuns.Tiny(Path.Combine(Root, "fewer"), steps: 8, every: 4) with { Replicas = 3 };
        await using var cluster = new InProcessCluster();
        await cluster.Add(Roles.Coordinator, Roles.Data, Roles.Learner);
        await cluster.Add(Roles.Learner);
        var result = await cluster.Run(0, config, "fewer", TimeSpan.FromMinutes(3));
        Assert.True(result.Status == RunStatus.Completed, result.Error);
        var formed = Assert.Single(MetricsFile.Lines(result.RunDirectory, "group"));
        Assert.Equal(2, formed.GetProperty("replicas").GetInt32());
        Assert.Equal(new long[] { 4, 8 }, MetricsFile.Lines(result.RunDirectory, "replicas").Select(a => a.GetProperty("step").GetInt64()));
    }

    [Fact]
    public async Task A_run_without_a_learner_node_fails_after_the_placement_timeout_naming_the_missing_role()
    {
        var config = TestRuns.Tiny(Path.Combine(Root, "none"), steps: 8) with { PlacementTimeoutSeconds = 3 };
        await using var cluster = new InProcessCluster();
        await cluster.Add(Roles.Coordinator, Roles.Data);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = await cluster.Run(0, config, "none", TimeSpan.FromMinutes(1));
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Contains("no learner node", result.Error);
        Assert.Contains("placement_timeout_seconds", result.Error);
        Assert.InRange(clock.Elapsed.TotalSeconds, 2.5, 30);
    }

    [Fact]
    public async Task A_replica_that_fails_is_not_restarted_alone_the_group_re_forms_from_the_latest_checkpoint()
    {
        var config = TestRuns.Tiny(Path.Combine(Root, "fails"), steps: 12, every: 4) with { Replicas = 2 };
        FailPoints.Set("learner.step", FailAction.Throw, at: 7, times: 1); // one replica, once (both run in this process)
        try
        {
            var result = await OnTwoLearners(config, "fails");
            var groups = MetricsFile.Lines(result.RunDirectory, "group");
            Assert.Equal(new[] { 2, 2 }, groups.Select(g => g.GetProperty("replicas").GetInt32()));
            Assert.Equal(4, groups[1].GetProperty("step").GetInt64()); // from the checkpoint before the failure
            Assert.Contains("fail point 'learner.step' fired at 7", groups[1].GetProperty("reason").GetString());
            Assert.Equal(new long[] { 4, 8, 12 }, MetricsFile.Lines(result.RunDirectory, "replicas").Select(a => a.GetProperty("step").GetInt64()).Distinct());
            // The re-form is a warning with its cause in the run's record (and on its progress topic, to the client).
            using var record = Runs.RunRecord.Open(Runs.RunRecord.RunsDirectoryOf(result.RunDirectory));
            var warning = Assert.Single(record.Warnings("fails"));
            Assert.Contains("the learner group re-forms from the latest checkpoint", warning.Message);
            Assert.Contains("fail point 'learner.step' fired at 7", warning.Message);
        }
        finally
        {
            FailPoints.Clear();
        }
    }
}
