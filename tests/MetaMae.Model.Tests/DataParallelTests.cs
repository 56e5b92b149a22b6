using System.Security.Cryptography;
using MetaMae.Model.Distributed;
using MetaMae.Model.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

/// <summary>Data-parallel replicas as threads of one process (<see cref="LocalRing"/>): the maths of a group, without a cluster.</summary>
public class DataParallelTests
{
    private static float[] RandomBuffer(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>Runs one body per replica on its own thread and waits for all.</summary>
    private static T[] OnReplicas<T>(RingCollective[] ring, Func<RingCollective, T> body)
    {
        var results = new T[ring.Length];
        var errors = new Exception?[ring.Length];
        var threads = ring.Select(c => new Thread(() =>
        {
            try
            {
                results[c.Rank] = body(c);
            }
            catch (Exception e)
            {
                errors[c.Rank] = e;
            }
        }, 16 << 20)).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a replica did not finish"));
        if (errors.FirstOrDefault(e => e is not null) is { } error) throw new AggregateException(error);
        return results;
    }

    [Theory]
    [InlineData(2, 10_007, 1_000)]
    [InlineData(3, 10_007, 333)]
    [InlineData(4, 3, 1_000)] // fewer elements than replicas: some segments are empty
    [InlineData(4, 100_000, 4_096)]
    public void Ring_all_reduce_sums_and_every_replica_gets_the_same_bits(int size, int length, int chunk)
    {
        var inputs = Enumerable.Range(0, size).Select(r => RandomBuffer(length, r)).ToArray();
        var expected = Enumerable.Range(0, length).Select(i => inputs.Sum(b => (double)b[i])).ToArray();
        var ring = LocalRing.Create(size, chunk);
        var outputs = OnReplicas(ring, c =>
        {
            var data = inputs[c.Rank].ToArray();
            c.AllReduceSum(data, length);
            c.AllReduceSum(data.AsSpan(0, 0).ToArray(), 0); // an empty reduce keeps the replicas in step
            return data;
        });
        for (int i = 0; i < length; i++) Assert.Equal(expected[i], outputs[0][i], 1e-5);
        foreach (var o in outputs.Skip(1)) Assert.Equal(outputs[0], o); // bit-identical, not merely close
    }

    [Fact]
    public void Bfloat16_transfer_sums_within_its_precision_and_stays_identical_across_replicas()
    {
        const int size = 3, length = 50_000;
        var inputs = Enumerable.Range(0, size).Select(r => RandomBuffer(length, 10 + r)).ToArray();
        var ring = LocalRing.Create(size, 7_000);
        var outputs = OnReplicas(ring, c =>
        {
            var data = inputs[c.Rank].ToArray();
            c.AllReduceSum(data, length, WirePrecision.BFloat16);
            return data;
        });
        double worst = 0;
        for (int i = 0; i < length; i++)
        {
            double exact = inputs.Sum(b => (double)b[i]);
            worst = Math.Max(worst, Math.Abs(outputs[0][i] - exact));
        }
        // Each of the N-1 hops and the final rounding lose at most half a bf16 ulp (2^-8 relative) of a partial sum <= 3.
        Assert.InRange(worst, 1e-6, size * 3 * Math.Pow(2, -8));
        foreach (var o in outputs.Skip(1)) Assert.Equal(outputs[0], o);
        Assert.Equal(1.0f, Bf16.ToSingle(Bf16.FromSingle(1.0f)));
        Assert.Equal(1.0f, Bf16.ToSingle(Bf16.FromSingle(1.00390625f))); // ties round to even
        Assert.True(float.IsNaN(Bf16.ToSingle(Bf16.FromSingle(float.NaN))));
    }

    [Fact]
    public void The_vectorised_bf16_codec_equals_the_scalar_one_bit_for_bit_on_every_kind_of_value()
    {
        // Random bit patterns (NaNs of both signs, infinities, subnormals, values that round up into the next binade
        // or to infinity), plus ties, over a length that leaves a scalar tail after the vector lanes.
        var random = new Random(7);
        var bits = Enumerable.Range(0, 4099).Select(_ => (uint)random.NextInt64(0, 1L << 32)).ToList();
        bits.AddRange([0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFFFFFFFu, 0x7F800001u, 0x00000001u, 0x80000000u,
            0x3F808000u, 0x3F818000u, 0x3F80FFFFu, 0x0000FFFFu]);
        var values = bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
        var half = new ushort[values.Length];
        Bf16.Encode(values, half);
        Assert.Equal(values.Select(Bf16.FromSingle), half);

        var decoded = new float[half.Length];
        Bf16.Decode(half, decoded);
        Assert.Equal(half.Select(h => BitConverter.SingleToUInt32Bits(Bf16.ToSingle(h))), decoded.Select(BitConverter.SingleToUInt32Bits));

        var sums = Enumerable.Range(0, half.Length).Select(i => (float)Math.Sin(i)).ToArray();
        var expected = sums.Select((v, i) => v + Bf16.ToSingle(half[i])).ToArray();
        Bf16.AddTo(half, sums);
        Assert.Equal(expected.Select(BitConverter.SingleToUInt32Bits), sums.Select(BitConverter.SingleToUInt32Bits));

        var rounded = (float[])values.Clone();
        Bf16.RoundInPlace(rounded);
        Assert.Equal(values.Select(v => BitConverter.SingleToUInt32Bits(Bf16.ToSingle(Bf16.FromSingle(v)))), rounded.Select(BitConverter.SingleToUInt32Bits));
    }

    [Fact]
    public void A_dissolved_group_wakes_a_blocked_replica_with_the_reason()
    {
        var inbox = new ChunkInbox(TimeSpan.FromSeconds(30));
        var replica = new RingCollective(0, 0, 2, (_, _) => { }, inbox);
        var blocked = Task.Run(() => replica.AllReduceSum(new float[10], 10));
        Thread.Sleep(100);
        inbox.Dissolve("replica 1's node left the cluster");
        var e = Assert.Throws<AggregateException>(() => blocked.Wait(TimeSpan.FromSeconds(10)));
        Assert.Contains("replica 1's node left", Assert.IsType<CollectiveAbortedException>(e.InnerException).Message);

        var silent = new RingCollective(0, 0, 2, (_, _) => { }, new ChunkInbox(TimeSpan.FromMilliseconds(200)));
        Assert.Contains("collective_timeout_seconds", Assert.Throws<CollectiveAbortedException>(() => silent.AllReduceSum(new float[4], 4)).Message);
    }

    [Fact]
    public void Sync_batch_norm_over_two_halves_matches_batch_norm_over_the_whole_batch()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var x = randn(12, 6, generator: g) * 3 + 1;
        var probe = randn(12, 6, generator: g); // the loss is sum(y * probe): a different weight per element

        var whole = nn.BatchNorm1d(6);
        using (no_grad()) whole.weight!.copy_(rand(6, generator: g) + 0.5);
        var state = whole.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var xWhole = x.clone().requires_grad_();
        (whole.call(xWhole) * probe).sum().backward();

        var ring = LocalRing.Create(2);
        var replicas = OnReplicas(ring, c =>
        {
            using var s = NewDisposeScope();
            var norm = nn.BatchNorm1d(6);
            norm.load_state_dict(state);
            norm.train();
            var rows = x[(6 * c.Rank)..(6 * c.Rank + 6)].clone().requires_grad_();
            var y = SyncBatchNorm.Forward(norm, rows, c);
            (y * probe[(6 * c.Rank)..(6 * c.Rank + 6)]).sum().backward();
            return (y.detach().MoveToOuterDisposeScope(), rows.grad!.MoveToOuterDisposeScope(), norm.weight!.grad!.clone().MoveToOuterDisposeScope(),
                norm.running_mean!.clone().MoveToOuterDisposeScope(), norm.running_var!.clone().MoveToOuterDisposeScope());
        });
        var yWhole = whole.call(x.clone()).detach(); // in training mode: the same normalisation, for comparison
        Close.Tensor(yWhole, cat([replicas[0].Item1, replicas[1].Item1]), "output", 1e-5);
        Close.Tensor(xWhole.grad!, cat([replicas[0].Item2, replicas[1].Item2]), "input gradient", 1e-5);
        Close.Tensor(whole.weight!.grad!, replicas[0].Item3 + replicas[1].Item3, "weight gradient (summed over replicas, as DDP then averages)", 1e-5);
        // The whole-batch module has taken two steps of running statistics (two forward calls): compare after one.
        var once = nn.BatchNorm1d(6);
        once.load_state_dict(state);
        once.train();
        once.call(x.clone());
        Close.Tensor(once.running_mean!, replicas[0].Item4, "running mean", 1e-6);
        Close.Tensor(once.running_var!, replicas[1].Item5, "running variance (unbiased)", 1e-5);
    }

    private static (MaskedAutoencoder Model, optim.Optimizer Optimizer) Replica(ModelConfig config)
    {
        var model = MaskedAutoencoder.Create(config, seed: 5);
        return (model, Optimizers.AdamW(model, lr: 1e-3));
    }

    private static string ParameterHash(MaskedAutoencoder model)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, p) in model.named_parameters())
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(name));
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(p.detach().cpu().data<float>().ToArray().AsSpan()));
        }
        foreach (var (name, b) in model.named_buffers())
            if (b.dtype == float32) hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.cpu().data<float>().ToArray().AsSpan()));
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    [Theory]
    [InlineData(WirePrecision.Float32, 0)]
    [InlineData(WirePrecision.BFloat16, 0)]
    [InlineData(WirePrecision.Float32, 2_000)] // gradients reduced in buckets behind the backward pass
    [InlineData(WirePrecision.BFloat16, 2_000)]
    public void Replicas_on_different_batches_stay_bit_identical_over_many_steps(WirePrecision precision, int bucketFloats)
    {
        var input = ModelTests.Spec("series");
        var config = ModelTests.Tiny(input) with { Size = ModelTests.Tiny(input).Size with { Dropout = 0.1 } };
        var ring = LocalRing.Create(3, 5_000);
        var hashes = OnReplicas(ring, c =>
        {
            var (model, optimizer) = Replica(config);
            using var generator = new Generator(1);
            model.DropoutGenerator = generator;
            var parallel = new DataParallel(c, precision, bucketFloats);
            for (long step = 1; step <= 12; step++)
            {
                using var s = NewDisposeScope();
                generator.manual_seed(TrainStep.DrawSeed(7, c.Rank, step));
                var x = ModelTests.Batch(input, 4, generator); // each replica its own batch
                using var draws = MaskingDraws.Sample(4, input.NumTokens, generator);
                TrainStep.Run(model, optimizer, x, draws, step, 1e-3, parallel);
            }
            var h = ParameterHash(model);
            model.Dispose();
            return h;
        });
        Assert.Single(hashes.Distinct());
    }

    [Fact]
    public void Bfloat16_gradient_transfer_trains_within_a_stated_tolerance_of_fp32()
    {
        // bf16 keeps 8 bits of mantissa, so each averaged gradient is off by up to ~2^-8 relative; the runs drift apart
        // a little (a parameter with a near-zero gradient can step either way). Stated tolerance: after 10 steps the
        // distance between the bf16 and fp32 weights is under 5% of the distance the fp32 weights travelled from init.
        var input = ModelTests.Spec("series");
        var config = ModelTests.Tiny(input);
        Dictionary<string, Tensor> Train(WirePrecision precision)
        {
            var ring = LocalRing.Create(2, 3_000);
            var models = OnReplicas(ring, c =>
            {
                var (model, optimizer) = Replica(config);
                using var generator = new Generator(1);
                var parallel = new DataParallel(c, precision);
                for (long step = 1; step <= 10; step++)
                {
                    using var s = NewDisposeScope();
                    generator.manual_seed(TrainStep.DrawSeed(11, c.Rank, step));
                    var x = ModelTests.Batch(input, 4, generator);
                    using var draws = MaskingDraws.Sample(4, input.NumTokens, generator);
                    TrainStep.Run(model, optimizer, x, draws, step, 1e-3, parallel);
                }
                return model;
            });
            return models[0].named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        }
        var (initial, _) = Replica(config);
        var init = initial.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var fp32 = Train(WirePrecision.Float32);
        var bf16 = Train(WirePrecision.BFloat16);
        double Distance(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b) =>
            Math.Sqrt(a.Sum(p => (p.Value - b[p.Key]).square().sum().item<float>()));
        double travelled = Distance(fp32, init), apart = Distance(bf16, fp32);
        Assert.True(apart > 0, "bf16 transfer changed nothing: is it used?");
        Assert.True(apart < 0.05 * travelled, $"bf16 weights are {apart:G3} from fp32's, {100 * apart / travelled:F2}% of the {travelled:G3} fp32 travelled");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3_000)]
    public void Two_replicas_with_batch_b_equal_one_learner_with_batch_2b_on_the_same_samples(int bucketFloats)
    {
        // Plain MAE: its loss is a mean over equally many masked tokens per sample, so it splits exactly across
        // replicas. MetaMAE's support loss is normalised per replica and its NT-Xent negatives are per replica, as in the
        // original under DDP, so a MetaMAE group is not a bigger batch (SyncBatchNorm above is checked on its own).
        var input = ModelTests.Spec("image");
        var config = ModelTests.Tiny(input, Objective.Mae);
        const int b = 4, steps = 5;
        var g = new Generator(9);
        var batches = Enumerable.Range(0, steps).Select(_ => ModelTests.Batch(input, 2 * b, g)).ToList();
        var noise = Enumerable.Range(0, steps).Select(_ => rand(2 * b, input.NumTokens, generator: g)).ToList();

        var (single, singleOptimizer) = Replica(config);
        for (int s = 0; s < steps; s++)
            TrainStep.Run(single, singleOptimizer, batches[s], new MaskingDraws(noise[s], noise[s]), s + 1, 1e-3);

        var ring = LocalRing.Create(2);
        var models = OnReplicas(ring, c =>
        {
            var (model, optimizer) = Replica(config);
            var parallel = new DataParallel(c, WirePrecision.Float32, bucketFloats);
            for (int s = 0; s < steps; s++)
            {
                var rows = (c.Rank * b)..(c.Rank * b + b);
                TrainStep.Run(model, optimizer, batches[s][rows], new MaskingDraws(noise[s][rows], noise[s][rows]), s + 1, 1e-3, parallel);
            }
            return model;
        });
        var replicaParameters = models[0].named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in single.named_parameters())
            Close.Tensor(p, replicaParameters[name], name, 2e-5);
    }

    /// <summary>The model and batch of each case of the staged-backward spec below.</summary>
    private static (ModelConfig Config, Tensor Batch) StagedCase(string name, Generator g)
    {
        if (name == "image+text")
        {
            var joint = InputSpec.ImageText(3, 16, 16, 4, 4, vocab: 20, textLength: 8);
            var config = new ModelConfig(joint, new ModelSize(16, 3, 2, 8, 1, 2, 0.0),
                new ObjectiveOptions { Objective = Objective.MetaMae, MaskRatio = 0.75, TextMaskRatio = 0.5, InnerLr = 0.5 });
            return (config, cat([randn(4, 3 * 16 * 16, generator: g), randint(0, 20, [4, 8], generator: g).to_type(float32)], 1));
        }
        var parts = name.Split(' ');
        var input = ModelTests.Spec(parts[0]);
        var objective = parts[1] == "mae" ? Objective.Mae : Objective.MetaMae;
        var size = new ModelSize(32, 3, 4, 16, 1, 2, 0.0); // three encoder blocks: four stages and a boundary between each
        var options = new ObjectiveOptions { Objective = objective, MaskRatio = 0.75, FirstOrder = parts[1] == "first-order" };
        return (new ModelConfig(input, size, options), ModelTests.Batch(input, 4, g));
    }

    [Theory]
    [InlineData("image metamae")]
    [InlineData("image first-order")]
    [InlineData("series mae")]
    [InlineData("tokens metamae")] // the decoder's logits are tied to the token embedding: two stages reach it
    [InlineData("image+text")]
    public void A_backward_pass_in_stages_with_gradients_reduced_in_buckets_equals_one_backward_pass(string name)
    {
        // Each replica its own batch; expected: the same group with one backward pass and one all-reduce after it (the
        // projector's BatchNorm is synchronised, so a group is not a mean of solo passes). A gradient a stage misses,
        // counts twice or leaves out of every bucket shows. Buckets of 1,000 floats: many, some of one stage, some of several.
        var g = new Generator(4);
        var (config, x0) = StagedCase(name, g);
        var (_, x1) = StagedCase(name, g);
        var batches = new[] { x0, x1 };
        var draws = new[] { MaskingDraws.Sample(4, config.Input.NumTokens, new Generator(5)), MaskingDraws.Sample(4, config.Input.NumTokens, new Generator(6)) };
        Dictionary<string, Tensor>[] Group(int bucketFloats) => OnReplicas(LocalRing.Create(2, 700), c =>
        {
            var (model, _) = Replica(config);
            model.train();
            var parallel = new DataParallel(c, WirePrecision.Float32, bucketFloats);
            Assert.Equal(bucketFloats > 0, parallel.Overlaps);
            model.Collective = parallel.Group;
            model.CutEncoder = parallel.Overlaps;
            var output = Objectives.Compute(model, batches[c.Rank], draws[c.Rank]);
            var stages = model.BackwardStages(output.Cuts);
            Assert.Equal(parallel.Overlaps ? 1 + config.Size.EncoderDepth : 1, stages.Count); // the head, then each block
            parallel.BackwardAndAverage(output.Total, () => stages, model.parameters());
            Assert.True(parallel.TotalCommunicationSeconds > 0);
            return model.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        });
        var plain = Group(0);
        var staged = Group(1_000);
        Assert.Equal(plain[0].Keys.Order(), staged[0].Keys.Order());
        foreach (var (key, grad) in plain[0])
        {
            Close.Tensor(grad, staged[0][key], key, 1e-5); // the same sums, in another order
            Assert.Equal(staged[0][key].data<float>().ToArray(), staged[1][key].data<float>().ToArray());
        }
    }

    [Fact]
    public void A_non_finite_loss_on_one_replica_stops_every_replica_before_any_update()
    {
        var input = ModelTests.Spec("series");
        var config = ModelTests.Tiny(input, Objective.Mae); // MetaMAE's synchronised BatchNorm would spread the NaN itself
        var ring = LocalRing.Create(2);
        var outcomes = OnReplicas(ring, c =>
        {
            var (model, optimizer) = Replica(config);
            var before = ParameterHash(model);
            using var g = new Generator((ulong)(2 + c.Rank));
            var x = ModelTests.Batch(input, 4, g);
            if (c.Rank == 1) x[0, 0, 0] = float.NaN;
            using var draws = MaskingDraws.Sample(4, input.NumTokens, g);
            var e = Record.Exception(() => TrainStep.Run(model, optimizer, x, draws, 1, 1e-3, new DataParallel(c)));
            return (e?.Message, Unchanged: ParameterHash(model) == before);
        });
        Assert.All(outcomes, o => Assert.True(o.Unchanged));
        Assert.Contains("on another replica of 2", outcomes[0].Message);
        Assert.Contains("on replica 1 of 2", outcomes[1].Message);
    }
}
