using OrasStaging.DiskImages;
using OrasStaging.IO;

namespace OrasStaging.Tests.DiskImages;

/// <summary>
/// A resumed install writes into the partial its killed run left (ImageFile, issue 12): whatever that file holds,
/// the result is the file a new write makes, and bytes already right are not written again.
/// </summary>
public class ReusedOutputTests
{
    private readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token;

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (string format in new[] { "qcow2", "raw", "vhd" })
        {
            foreach (string old in new[] { "killed-at-60%", "random-and-longer", "all-0xFF", "empty" })
            {
                data.Add(format, old);
            }
        }

        return data;
    }

    private static DiskImageFormat FormatOf(string name) => name switch
    {
        "qcow2" => DiskImageFormat.Qcow2,
        "raw" => DiskImageFormat.Raw,
        _ => DiskImageFormat.Vhd,
    };

    private async Task Write(string input, string output, DiskImageFormat format, bool reuse)
    {
        await using var stream = File.OpenRead(input);
        await DiskImageWriter.WriteAsync(stream, output, new DiskWriteOptions { Format = format, ReuseOutput = reuse }, NullOperationSink.Instance, Timeout);
    }

    /// <summary>
    /// What a kill leaves: the first part of the output, as sparse as it was written, with the first 64 KiB (a qcow2
    /// header is written last) still zeros.
    /// </summary>
    private static void WriteKilledCopy(string fresh, string path, double fraction, bool clearHead = true)
    {
        var (code, output) = ImageTools.Run("cp", "--sparse=always", fresh, path);
        Assert.True(code == 0, output);
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        file.SetLength((long)(file.Length * fraction));
        if (clearHead)
        {
            file.Write(new byte[Math.Min(file.Length, 65536)]);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task AReusedPartialEndsAsANewWriteWhateverItHeld(string formatName, string old)
    {
        using var dir = new TempDir();
        var format = FormatOf(formatName);
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string input = TestInputs.Encode(dir, raw, "gzip");
        string fresh = dir.File("fresh." + formatName);
        string reused = dir.File("reused." + formatName);
        await Write(input, fresh, format, reuse: false);
        long freshLength = new FileInfo(fresh).Length;

        switch (old)
        {
            case "killed-at-60%":
                WriteKilledCopy(fresh, reused, 0.6);
                break;
            case "random-and-longer":
                File.WriteAllBytes(reused, System.Security.Cryptography.RandomNumberGenerator.GetBytes((int)(freshLength * 3 / 2)));
                break;
            case "all-0xFF":
                byte[] ones = new byte[freshLength];
                Array.Fill(ones, (byte)0xFF);
                File.WriteAllBytes(reused, ones);
                break;
            default:
                File.WriteAllBytes(reused, Array.Empty<byte>());
                break;
        }

        await Write(input, reused, format, reuse: true);

        byte[] expected = File.ReadAllBytes(fresh);
        byte[] actual = File.ReadAllBytes(reused);
        Assert.Equal(expected.Length, actual.Length);
        // A VHD footer carries a new id and time on every write; everything before it must match.
        int compared = format == DiskImageFormat.Vhd ? expected.Length - VhdFooter.Length : expected.Length;
        Assert.True(expected.AsSpan(0, compared).SequenceEqual(actual.AsSpan(0, compared)), $"{formatName} over {old}: the reused file differs from a new write.");
        if (format == DiskImageFormat.Qcow2)
        {
            ImageTools.AssertCheckClean(reused);
        }
        else
        {
            ImageTools.AssertIdentical(raw, reused, format == DiskImageFormat.Vhd ? "vpc" : "raw");
            // The old file's data in what must be zeros is gone from the disk too: the holes are holes again.
            Assert.Equal(DiskSpace.AllocatedBytes(fresh), DiskSpace.AllocatedBytes(reused));
        }
    }

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public void APartialThatHoldsTheImageAlreadyIsNotWrittenAgain(string formatName)
    {
        using var dir = new TempDir();
        var format = FormatOf(formatName);
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string fresh = dir.File("fresh." + formatName);
        string reused = dir.File("reused." + formatName);
        Feed(raw, fresh, format, reuse: false);
        // Killed after its last data and tables, before the qcow2 header: everything but that is in place.
        WriteKilledCopy(fresh, reused, 1.0, clearHead: format == DiskImageFormat.Qcow2);

        var (matched, rewritten) = Feed(raw, reused, format, reuse: true);

        Assert.True(File.ReadAllBytes(fresh).AsSpan().SequenceEqual(File.ReadAllBytes(reused)), "the reused file differs from a new write");
        // qcow2: only the header is written (cluster 0 is zero in both until then); raw: nothing.
        long expected = format == DiskImageFormat.Qcow2 ? 120 : 0;
        Assert.Equal(expected, rewritten);
        Assert.True(matched > 1L << 20, $"only {matched} bytes matched");
    }

    [Fact]
    public void WithoutAFileThereReuseMakesANewOne()
    {
        using var dir = new TempDir();
        string path = dir.File("new.qcow2");
        using var file = ImageFile.Open(path, reuse: true);
        Assert.False(file.Reused);
        Assert.True(File.Exists(path));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WhatThisRunLeavesUnwrittenReadsAsZeros(bool punchHoles)
    {
        using var dir = new TempDir();
        string path = dir.File("old.raw");
        byte[] ones = new byte[3 << 20];
        Array.Fill(ones, (byte)0xFF);
        File.WriteAllBytes(path, ones);
        byte[] data = new byte[4096];
        Array.Fill(data, (byte)7);

        using (var file = ImageFile.Open(path, reuse: true, punchHoles))
        {
            file.Write(data, 1 << 20);
            file.Write(ones.AsSpan(0, 4096), (2 << 20) + 4096);
            file.EndAt((2 << 20) + 100_000);
            Assert.Equal(4096, file.Matched);
        }

        byte[] expected = new byte[(2 << 20) + 100_000];
        data.CopyTo(expected, 1 << 20);
        ones.AsSpan(0, 4096).CopyTo(expected.AsSpan((2 << 20) + 4096));
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(path)), "the file does not hold the writes and zeros elsewhere");
    }

    private static (long Matched, long Rewritten) Feed(string raw, string output, DiskImageFormat format, bool reuse)
    {
        byte[] all = File.ReadAllBytes(raw);
        using var target = ImageFile.OpenWriter(output, format, reuse);
        const int chunk = 1 << 20;
        for (int off = 0; off < all.Length; off += chunk)
        {
            int n = Math.Min(chunk, all.Length - off);
            target.Append(all[off..(off + n)], n);
        }

        target.Finish(all.Length, TestInputs.RoundUp(all.Length, 512));
        Assert.Equal(reuse, target.File!.Reused);
        return (target.File.Matched, target.File.Rewritten);
    }
}
