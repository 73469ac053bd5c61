using OrasStaging.DiskImages;
using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

public class InstallFlowTests
{
    private static byte[] Blob(int size = 300_000, int seed = 1)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static InstallRequest Request(string path, string? pinned = null, bool force = false, string? keep = null) => new()
    {
        Reference = "oras://127.0.0.1:5000/lab/disk:latest",
        PinnedDigest = pinned,
        Path = path,
        Force = force,
        KeepBlob = keep,
        LockTimeout = TimeSpan.FromSeconds(5),
    };

    private static Task<StagedImage> Run(FakeSource source, InstallRequest request, CopyWriter? writer = null, CancellationToken ct = default) =>
        new InstallFlow(source, writer ?? new CopyWriter(), new ListSink()).RunAsync(request, ct);

    [Fact]
    public async Task AFolderAsTheImagePathIsInvalidArgumentBeforeTheRegistryIsAsked()
    {
        using var dir = new TempFolder();
        string folder = Path.Combine(dir.Path, "disk.img");
        Directory.CreateDirectory(folder);
        var source = new FakeSource(Blob());

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Run(source, Request(folder)));

        Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
        Assert.Contains("folder", ex.Message);
        Assert.Equal(0, source.Resolves);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public async Task StagesImageStampAndReceiptAndNothingElse()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        byte[] blob = Blob();
        var source = new FakeSource(blob);

        var result = await Run(source, Request(image));

        Assert.False(result.Skipped);
        Assert.Equal(blob, File.ReadAllBytes(image));
        Assert.Equal(source.Digest, File.ReadAllText(image + ".digest"));
        var receipt = Receipt.Read(image)!;
        Assert.Equal(source.Digest, receipt.Digest);
        Assert.Equal(source.ManifestDigest, receipt.ManifestDigest);
        Assert.Equal("lab/disk", receipt.Repository);
        Assert.Equal(DiskImageFormat.Raw, receipt.Format);
        Assert.Contains("\"format\": \"raw\"", File.ReadAllText(image + ".oras.json"));
        Assert.Equal(blob.Length, receipt.VirtualSize);
        Assert.Equal(new[] { "disk.img", "disk.img.digest", "disk.img.oras.json" }, dir.Files());
        Assert.Equal(source.Digest, result.Digest);
        Assert.Equal(blob.Length, result.FileSize);
    }

    [Fact]
    public async Task PinnedBlobDigestWithMatchingStampSkipsWithoutAnyRequest()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var source = new FakeSource(Blob());
        await Run(source, Request(image));

        var again = new FakeSource(Blob());
        var result = await Run(again, Request(image, pinned: again.Digest));

        Assert.True(result.Skipped);
        Assert.Equal(0, again.Resolves);
        Assert.Equal(0, again.Opens);
        Assert.Contains("blob digest", result.SkipReason);
    }

    [Fact]
    public async Task PinnedManifestDigestSkipsOfflineThroughTheReceipt()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var source = new FakeSource(Blob());
        await Run(source, Request(image));

        var again = new FakeSource(Blob());
        var result = await Run(again, Request(image, pinned: source.ManifestDigest));

        Assert.True(result.Skipped);
        Assert.Equal(0, again.Resolves);
        Assert.Equal(source.ManifestDigest, result.ManifestDigest);
        Assert.Equal("raw", result.Format);
    }

    [Fact]
    public async Task PinnedManifestWithoutReceiptResolvesAndHonoursASeedStamp()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.qcow2");
        byte[] blob = Blob();
        File.WriteAllBytes(image, new byte[] { 1, 2, 3 });
        File.WriteAllText(image + ".digest", FakeSource.DigestOf(blob) + "\n");
        var source = new FakeSource(blob);

        var result = await Run(source, Request(image, pinned: source.ManifestDigest));

        Assert.True(result.Skipped);
        Assert.Equal(1, source.Resolves);
        Assert.Equal(0, source.Opens);
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(image));
    }

    [Fact]
    public async Task TagResolvesOnlyAndSkipsWhenTheLayerIsStamped()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        await Run(new FakeSource(Blob()), Request(image));

        var again = new FakeSource(Blob());
        var result = await Run(again, Request(image));

        Assert.True(result.Skipped);
        Assert.Equal(1, again.Resolves);
        Assert.Equal(0, again.Opens);
    }

    [Fact]
    public async Task NewLayerBehindTheTagReplacesTheImage()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        await Run(new FakeSource(Blob(seed: 1)), Request(image));
        byte[] newer = Blob(seed: 2);
        var source = new FakeSource(newer);

        var result = await Run(source, Request(image));

        Assert.False(result.Skipped);
        Assert.Equal(newer, File.ReadAllBytes(image));
        Assert.Equal(source.Digest, StampFile.Read(image));
    }

    [Fact]
    public async Task ForceAndAMissingStampOrImageReStage()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var first = new FakeSource(Blob());
        await Run(first, Request(image));

        var forced = new FakeSource(Blob());
        Assert.False((await Run(forced, Request(image, pinned: forced.Digest, force: true))).Skipped);
        Assert.Equal(1, forced.Opens);

        File.Delete(image + ".digest");
        var unstamped = new FakeSource(Blob());
        Assert.False((await Run(unstamped, Request(image, pinned: unstamped.Digest))).Skipped);

        File.Delete(image);
        var missing = new FakeSource(Blob());
        Assert.False((await Run(missing, Request(image, pinned: missing.Digest))).Skipped);
        Assert.Equal(new[] { "disk.img", "disk.img.digest", "disk.img.oras.json" }, dir.Files());
    }

    [Fact]
    public async Task DigestMismatchLeavesThePreviousImageStampAndReceipt()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        byte[] good = Blob(seed: 1);
        await Run(new FakeSource(good), Request(image));
        string stamp = File.ReadAllText(image + ".digest");
        string receipt = File.ReadAllText(image + ".oras.json");

        var bad = new FakeSource(Blob(seed: 2)) { CorruptAt = 1000 };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Run(bad, Request(image)));

        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
        Assert.Equal(good, File.ReadAllBytes(image));
        Assert.Equal(stamp, File.ReadAllText(image + ".digest"));
        Assert.Equal(receipt, File.ReadAllText(image + ".oras.json"));
        Assert.Equal(new[] { "disk.img", "disk.img.digest", "disk.img.oras.json" }, dir.Files());
    }

    [Fact]
    public async Task TheDigestIsCheckedEvenWhenTheDecoderStopsEarly()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var bad = new FakeSource(Blob()) { CorruptAt = 250_000 };
        var writer = new CopyWriter { StopAfter = 10_000 };

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Run(bad, Request(image), writer));

        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public async Task ADecoderErrorCausedByDamagedBytesIsReportedAsDigestMismatch()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var bad = new FakeSource(Blob()) { CorruptAt = 100 };

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Run(bad, Request(image), new CopyWriter { FailAfter = 50_000 }));

        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public async Task WriterFailureLeavesNothing()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Run(new FakeSource(Blob()), Request(image), new CopyWriter { FailAfter = 50_000 }));
        Assert.Equal(ErrorCode.CorruptInput, ex.Code);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public async Task CancellationLeavesNothing()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        using var gate = new SemaphoreSlim(0);
        var source = new FakeSource(Blob()) { Gate = gate };
        using var cts = new CancellationTokenSource();

        var run = Run(source, Request(image), ct: cts.Token);
        await WaitUntil(() => dir.Files().Any(f => f.EndsWith(".partial", StringComparison.Ordinal)));
        cts.Cancel();
        gate.Release(1000);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public async Task StalePartialsOfAKilledRunAreRemoved()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        File.WriteAllText(image + ".0badf00d.partial", "half");
        File.WriteAllText(Path.Combine(dir.Path, "other.img.0badf00d.partial"), "not ours");

        await Run(new FakeSource(Blob()), Request(image));

        Assert.Equal(new[] { "disk.img", "disk.img.digest", "disk.img.oras.json", "other.img.0badf00d.partial" }, dir.Files());
    }

    [Fact]
    public async Task KeepBlobStoresTheVerifiedBlobAndLaterRunsReuseIt()
    {
        using var dir = new TempFolder();
        string keep = Path.Combine(dir.Path, "blobs");
        byte[] blob = Blob();
        var source = new FakeSource(blob);
        var writer = new CopyWriter { StopAfter = 1000 };

        await Run(source, Request(Path.Combine(dir.Path, "a.img"), keep: keep), writer);
        string kept = Path.Combine(keep, "sha256", source.Digest["sha256:".Length..]);
        Assert.Equal(blob, File.ReadAllBytes(kept));

        var second = new FakeSource(blob);
        await Run(second, Request(Path.Combine(dir.Path, "b.img"), keep: keep));
        Assert.Equal(0, second.Opens);
        Assert.Equal(blob, File.ReadAllBytes(Path.Combine(dir.Path, "b.img")));
        Assert.Single(Directory.GetFiles(keep, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task KeepBlobKeepsNothingWhenTheDigestFails()
    {
        using var dir = new TempFolder();
        string keep = Path.Combine(dir.Path, "blobs");
        var bad = new FakeSource(Blob()) { CorruptAt = 5 };
        await Assert.ThrowsAsync<OrasStagingException>(() => Run(bad, Request(Path.Combine(dir.Path, "a.img"), keep: keep)));
        Assert.Empty(Directory.GetFiles(keep, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task ADamagedKeptBlobIsCaught()
    {
        using var dir = new TempFolder();
        string keep = Path.Combine(dir.Path, "blobs");
        byte[] blob = Blob();
        var source = new FakeSource(blob);
        await Run(source, Request(Path.Combine(dir.Path, "a.img"), keep: keep));
        string kept = Path.Combine(keep, "sha256", source.Digest["sha256:".Length..]);
        byte[] rotten = File.ReadAllBytes(kept);
        rotten[7] ^= 1;
        File.WriteAllBytes(kept, rotten);

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Run(new FakeSource(blob), Request(Path.Combine(dir.Path, "b.img"), keep: keep)));
        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
        Assert.False(File.Exists(Path.Combine(dir.Path, "b.img")));
        Assert.False(File.Exists(kept));
        Assert.Contains("Run again", ex.RecommendedAction);

        // The next run downloads the blob again, stages the image and keeps a verified copy.
        var again = new FakeSource(blob);
        await Run(again, Request(Path.Combine(dir.Path, "b.img"), keep: keep));
        Assert.Equal(1, again.Opens);
        Assert.Equal(blob, File.ReadAllBytes(Path.Combine(dir.Path, "b.img")));
        Assert.Equal(blob, File.ReadAllBytes(kept));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ForceBypassesADamagedOrTruncatedKeptBlob(bool truncate)
    {
        using var dir = new TempFolder();
        string keep = Path.Combine(dir.Path, "blobs");
        byte[] blob = Blob();
        var source = new FakeSource(blob);
        await Run(source, Request(Path.Combine(dir.Path, "a.img"), keep: keep));
        string kept = Path.Combine(keep, "sha256", source.Digest["sha256:".Length..]);
        byte[] rotten = File.ReadAllBytes(kept);
        if (truncate)
        {
            rotten = rotten[..(rotten.Length / 2)];
        }
        else
        {
            rotten[7] ^= 1;
        }

        File.WriteAllBytes(kept, rotten);

        var forced = new FakeSource(blob);
        var result = await Run(forced, Request(Path.Combine(dir.Path, "a.img"), force: true, keep: keep));
        Assert.False(result.Skipped);
        Assert.Equal(1, forced.Opens);
        Assert.Equal(blob, File.ReadAllBytes(Path.Combine(dir.Path, "a.img")));
        Assert.Equal(blob, File.ReadAllBytes(kept));
    }

    [Fact]
    public async Task ASecondStagingOfTheSameTargetWaitsThenSkips()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        byte[] blob = Blob();
        using var gate = new SemaphoreSlim(0);
        var slow = new FakeSource(blob) { Gate = gate };
        var first = Run(slow, Request(image));
        await WaitUntil(() => dir.Files().Any(f => f.EndsWith(".partial", StringComparison.Ordinal)));

        var other = new FakeSource(blob);
        var second = Run(other, Request(image));
        await Task.Delay(300);
        Assert.False(second.IsCompleted);
        gate.Release(10_000);

        var results = await Task.WhenAll(first, second);
        Assert.False(results[0].Skipped);
        Assert.True(results[1].Skipped);
        Assert.Equal(0, other.Opens);
        Assert.Equal(new[] { "disk.img", "disk.img.digest", "disk.img.oras.json" }, dir.Files());
    }

    [Fact]
    public async Task LockWaitIsBounded()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        using (await TargetLock.AcquireAsync(image, TimeSpan.Zero, new ListSink(), default))
        {
            var request = Request(image) with { LockTimeout = TimeSpan.FromMilliseconds(400) };
            var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Run(new FakeSource(Blob()), request));
            Assert.Equal(ErrorCode.LockTimeout, ex.Code);
        }

        Assert.Empty(dir.Files());
    }

    [Fact]
    public async Task AFolderThatCannotBeCreatedIsAClearError()
    {
        using var dir = new TempFolder();
        // A file where a folder should be: fails for root too, unlike permission bits.
        File.WriteAllText(Path.Combine(dir.Path, "file"), "x");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Run(new FakeSource(Blob()), Request(Path.Combine(dir.Path, "file", "sub", "disk.img"))));
        Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
        Assert.Equal(new[] { "file" }, dir.Files());
    }

    [Fact]
    public async Task AKeepBlobFolderThatCannotBeCreatedIsDestinationNotWritable()
    {
        using var dir = new TempFolder();
        File.WriteAllText(Path.Combine(dir.Path, "file"), "x");
        var source = new FakeSource(Blob());
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Run(source, Request(Path.Combine(dir.Path, "disk.img"), keep: Path.Combine(dir.Path, "file"))));
        Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
        Assert.Contains("file", ex.Message);
        Assert.Equal(0, source.Opens);
        Assert.Equal(new[] { "file" }, dir.Files().Where(f => !f.EndsWith(".lock", StringComparison.Ordinal)));
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting");
            await Task.Delay(20);
        }
    }
}
