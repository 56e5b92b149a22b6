using MetaMae.Cli.Bench;
using MetaMae.Model;

namespace MetaMae.Actors.Tests;

/// <summary>The step benchmark's analytic FLOP count, checked against a count done by hand.</summary>
public sealed class StepFlopsSpecs
{
    [Fact]
    public void The_flop_count_matches_a_hand_count_and_metamae_counts_its_extra_decoder_passes()
    {
        // 1-D input: C = 2, T = 8, patch 2 -> L = 4 tokens of 4 values; mask 0.5 -> K = 2. D = 8 (1 block), E = 4 (1 block), MLP ratio 2.
        var input = InputSpec.Series(2, 8, 2);
        var size = new ModelSize(8, 1, 2, 4, 1, 1, 0.0);
        var mae = new ModelConfig(input, size, new ObjectiveOptions { Objective = Objective.Mae, MaskRatio = 0.5 });
        // Encoder: patch embed 2*4*4*8 = 256; block on 3 tokens: 3*64*(6+2+8) = 3072 plus attention 4*9*8 = 288 -> 3360.
        // Decoder: embed 2*3*8*4 = 192; block on 5 tokens: 5*16*16 = 1280 plus 4*25*4 = 400; head on the 4 tokens (not CLS) 2*4*4*4 = 128 -> 2000.
        var (encoder, decoder) = StepFlops.Forward(mae, batch: 1);
        Assert.Equal(256 + 3360, encoder);
        Assert.Equal(192 + 1680 + 128, decoder);
        Assert.Equal(3 * (encoder + decoder) * 10, StepFlops.Step(mae, batch: 10));
        var meta = mae with { Options = mae.Options with { Objective = Objective.MetaMae } };
        Assert.Equal(3 * encoder + 9 * decoder, StepFlops.Step(meta, 1));
        Assert.Equal(3 * encoder + 5 * decoder, StepFlops.Step(meta with { Options = meta.Options with { FirstOrder = true } }, 1));
    }

    [Fact]
    public void Image_text_counts_each_modality_through_its_own_embedding_and_head()
    {
        // Image 1x4x4 in 2x2 patches (4 tokens of 4 values, mask 0.75 -> 1 kept) + 2 text ids of 10 (mask 0.5 -> 1 kept): K = 2, L = 6.
        var input = InputSpec.ImageText(1, 4, 4, 2, 2, vocab: 10, textLength: 2);
        var config = new ModelConfig(input, new ModelSize(8, 1, 2, 4, 1, 1, 0.0),
            new ObjectiveOptions { Objective = Objective.Mae, MaskRatio = 0.75, TextMaskRatio = 0.5 });
        // Encoder: patch embed 2*4*4*8 = 256 (ids are a lookup); block on 3 tokens 3360 -> 3616.
        // Decoder: embed 2*3*8*4 = 192; block on 7 tokens 7*16*16 = 1792 plus 4*49*4 = 784; patch head 2*4*4*4 = 128;
        // text head 2*2*4*8 = 128 and tied logits 2*2*8*10 = 320 -> 3344.
        var (encoder, decoder) = StepFlops.Forward(config, batch: 1);
        Assert.Equal(256 + 3360, encoder);
        Assert.Equal(192 + 2576 + 128 + 448, decoder);
    }
}

/// <summary>The bench's allocator environments: what each choice sets and clears in a child process.</summary>
public sealed class AllocatorSpecs
{
    [Fact]
    public void Auto_is_jemalloc_without_purging_where_installed_and_tuned_glibc_elsewhere()
    {
        var resolved = Allocators.Resolve("auto");
        Assert.Equal(Allocators.JemallocPath is null ? "glibc-tuned" : "jemalloc", resolved);
        var glibc = Allocators.Environment("glibc-tuned");
        Assert.Equal("33554432", glibc["MALLOC_MMAP_THRESHOLD_"]);
        Assert.Null(glibc["LD_PRELOAD"]); // a preloaded jemalloc from the parent must not leak into a glibc row
        Assert.All(Allocators.Environment("glibc").Values, Assert.Null);
        if (Allocators.JemallocPath is { } path)
        {
            var je = Allocators.Environment("jemalloc");
            Assert.Equal(path, je["LD_PRELOAD"]);
            Assert.Contains("dirty_decay_ms:-1", je["MALLOC_CONF"]);
        }
        Assert.Throws<ArgumentException>(() => Allocators.Environment("tcmalloc"));
    }
}
