using OrasStaging.Staging;
using OrasStaging.Tests.DiskImages;

namespace OrasStaging.Tests.Staging;

/// <summary>The compressed bytes an install keeps for a resume (ResumingSource over ResumePrefix).</summary>
public class ResumingSourceTests
{
    [Fact]
    public async Task AnUnusablePrefixIsCreatedAgainNotTruncatedToZero()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // A hard link is how this test tells a new file from a truncated one.
        }

        using var dir = new TempFolder();
        byte[] blob = new byte[3_000_000];
        new Random(5).NextBytes(blob);
        var source = new FakeSource(blob);
        var layer = await source.ResolveAsync(CancellationToken.None);
        var prefix = ResumePrefix.For(Path.Combine(dir.Path, "disk.img"), null, layer);
        File.WriteAllBytes(prefix.Path, new byte[5_000_000]);
        prefix.WriteRecord(layer, 0); // Its own blob, but no byte of it counted as received: nothing to reuse.
        string link = Path.Combine(dir.Path, "stale-link");
        var (exit, output) = ImageTools.Run("ln", prefix.Path, link); // Another name for the stale file: it sees a truncation, not a new file.
        Assert.True(exit == 0, $"ln failed: {output}");

        var received = new MemoryStream();
        await using (var stream = await new ResumingSource(source, prefix, NullOperationSink.Instance).OpenBlobAsync(layer, CancellationToken.None))
        {
            // ext4 writes a file truncated to 0 out in full when it is closed; a new file it leaves in the page cache.
            Assert.Equal(5_000_000, new FileInfo(link).Length);
            await stream.CopyToAsync(received);
        }

        Assert.Equal(blob, received.ToArray());
        Assert.False(File.Exists(prefix.Path), "the verified end deletes the prefix when no -KeepBlob folder is given");
    }
}
