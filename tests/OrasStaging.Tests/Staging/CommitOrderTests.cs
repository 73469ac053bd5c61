using OrasStaging.DiskImages;
using OrasStaging.IO;
using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

/// <summary>
/// The README's commit order: an interrupted commit never leaves a stamp (or receipt) beside a different image.
/// A crash can stop the commit after any file-system operation, so the test records every operation the commit
/// makes (inotify, in order) and checks the promise after each prefix of them; and it makes the steps after the
/// rename fail for real and looks at what is left.
/// </summary>
public class CommitOrderTests
{
    private const string OldDigest = "sha256:" + "0000000000000000000000000000000000000000000000000000000000000001";
    private const string NewDigest = "sha256:" + "0000000000000000000000000000000000000000000000000000000000000002";

    [Fact]
    public async Task EveryPrefixOfTheCommitLeavesNoStampOrReceiptBesideADifferentImage()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var partial = Arrange(image);
        var events = new List<(WatcherChangeTypes Kind, string? From, string To)>();
        var gotLast = new TaskCompletionSource();
        using (var watcher = new FileSystemWatcher(dir.Path) { InternalBufferSize = 64 * 1024 })
        {
            watcher.Created += (_, e) => Record(e.ChangeType, null, e.Name!);
            watcher.Deleted += (_, e) => Record(e.ChangeType, null, e.Name!);
            watcher.Renamed += (_, e) => Record(e.ChangeType, e.OldName, e.Name!);
            watcher.Error += (_, e) => gotLast.TrySetException(e.GetException());
            watcher.EnableRaisingEvents = true;

            StagingCommit.Commit(Request(image), partial, Layer(NewDigest), new WrittenImage(DiskImageFormat.Raw, 3, 3, 3));

            // The receipt is the commit's last write; its rename into place is the last event. The budget is for
            // a loaded machine only: inotify delivers in order, so the wait never changes the outcome.
            var finished = await Task.WhenAny(gotLast.Task, Task.Delay(TimeSpan.FromSeconds(60)));
            Assert.True(finished == gotLast.Task, "the watcher saw the receipt's rename within 60 s");
            await gotLast.Task;
        }

        // Replay: what a crash after each event would leave.
        string imageIs = "old", stampIs = "old", receiptIs = "old";
        bool renamed = false;
        for (int i = 0; i < events.Count; i++)
        {
            var (kind, from, to) = events[i];
            if (kind == WatcherChangeTypes.Deleted && to == "disk.img.digest") { stampIs = "none"; }
            if (kind == WatcherChangeTypes.Deleted && to == "disk.img.oras.json") { receiptIs = "none"; }
            if (kind == WatcherChangeTypes.Renamed && to == "disk.img") { imageIs = "new"; renamed = true; }
            if (kind == WatcherChangeTypes.Renamed && to == "disk.img.digest") { stampIs = imageIs == "new" ? "new" : "stale-new"; }
            if (kind == WatcherChangeTypes.Renamed && to == "disk.img.oras.json") { receiptIs = imageIs == "new" ? "new" : "stale-new"; }

            string state = $"after event {i} ({kind} {from} -> {to}): image {imageIs}, stamp {stampIs}, receipt {receiptIs}";
            Assert.True(stampIs == "none" || stampIs == imageIs, state);
            Assert.True(receiptIs == "none" || receiptIs == imageIs, state);
        }

        Assert.True(renamed, "the image was renamed into place");
        Assert.Equal(("new", "new", "new"), (imageIs, stampIs, receiptIs));
        Assert.Equal("NEW", File.ReadAllText(image));
        Assert.Equal(NewDigest, StampFile.Read(image));

        void Record(WatcherChangeTypes kind, string? from, string to)
        {
            lock (events)
            {
                events.Add((kind, from, to));
                if (kind == WatcherChangeTypes.Renamed && to == "disk.img.oras.json")
                {
                    gotLast.TrySetResult();
                }
            }
        }
    }

    [Fact]
    public void AStampThatCannotBeWrittenLeavesTheNewImageWithNoStampAndNoReceipt()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var partial = Arrange(image);
        // The injected failure between "image renamed" and "stamp written": the stamp's rename into place fails
        // because a directory has taken its name (after the old stamp file was removed, as a crash could).
        File.Delete(StampFile.PathFor(image));
        Directory.CreateDirectory(StampFile.PathFor(image));

        Assert.ThrowsAny<Exception>(() =>
            StagingCommit.Commit(Request(image), partial, Layer(NewDigest), new WrittenImage(DiskImageFormat.Raw, 3, 3, 3)));

        Assert.Equal("NEW", File.ReadAllText(image));
        Assert.False(File.Exists(StampFile.PathFor(image)), "no stamp file");
        Assert.False(File.Exists(Receipt.PathFor(image)), "the old receipt is not left beside the new image");
        Assert.Null(Receipt.Read(image));
    }

    [Fact]
    public void AReceiptThatCannotBeWrittenLeavesTheOldReceiptGoneAndTheStampRight()
    {
        using var dir = new TempFolder();
        string image = Path.Combine(dir.Path, "disk.img");
        var partial = Arrange(image);
        File.Delete(Receipt.PathFor(image));
        Directory.CreateDirectory(Receipt.PathFor(image));

        Assert.ThrowsAny<Exception>(() =>
            StagingCommit.Commit(Request(image), partial, Layer(NewDigest), new WrittenImage(DiskImageFormat.Raw, 3, 3, 3)));

        Assert.Equal("NEW", File.ReadAllText(image));
        Assert.Equal(NewDigest, StampFile.Read(image));
    }

    /// <summary>An old image "OLD" with its stamp and receipt, and a written partial "NEW".</summary>
    private static PartialFile Arrange(string image)
    {
        File.WriteAllText(image, "OLD");
        StampFile.Write(image, OldDigest);
        new Receipt
        {
            Reference = "oras://r/x:old", Registry = "r", Repository = "x", Digest = OldDigest,
            Format = DiskImageFormat.Raw, VirtualSize = 3, Time = DateTimeOffset.UnixEpoch, ModuleVersion = "0",
        }.Write(image);
        var partial = PartialFile.RandomBeside(image);
        File.WriteAllText(partial.PartialPath, "NEW");
        return partial;
    }

    private static InstallRequest Request(string image) => new() { Reference = "oras://r/x:new", Path = image };

    private static ResolvedLayer Layer(string digest) =>
        new() { Reference = "oras://r/x:new", Registry = "r", Repository = "x", Digest = digest, Size = 3 };
}
