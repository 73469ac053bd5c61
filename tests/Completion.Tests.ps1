#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Tab completion through TabExpansion2, as the console does it: -Platform values, -Reference tags from a real
# registry's tag list (anonymous and anonymous-bearer), and silence within the budget when the registry fails.
# The export-driven part checks that every exported cmdlet wires the completers to its parameters.

BeforeDiscovery {
    Import-Module $env:ORASSTAGING_MODULE -Force
    $script:TestKitModule = Join-Path $PSScriptRoot 'TestKit.psm1'
    $exported = @(Get-Command -Module OrasStaging -CommandType Cmdlet)
    $script:ReferenceCases = @($exported | Where-Object { $_.Parameters.ContainsKey('Reference') } | ForEach-Object { @{ Name = $_.Name } })
    $script:PlatformCases = @($exported | Where-Object { $_.Parameters.ContainsKey('Platform') } | ForEach-Object { @{ Name = $_.Name } })
    $script:FormatCases = @($exported | Where-Object { $_.Parameters.ContainsKey('Format') } | ForEach-Object { @{ Name = $_.Name } })
    # Pester 5 generates no test at all from an empty -ForEach, which would pass silently: refuse it here (a
    # failed discovery fails the run) and count the cases again as tests below.
    foreach ($list in @{ Reference = $ReferenceCases; Platform = $PlatformCases; Format = $FormatCases }.GetEnumerator()) {
        if ($list.Value.Count -eq 0) { throw "No exported cmdlet has -$($list.Key): the built module ($env:ORASSTAGING_MODULE) exports $($exported.Count) cmdlet(s)." }
    }
    $script:CaseCounts = @(
        @{ Parameter = 'Reference'; Count = $ReferenceCases.Count }
        @{ Parameter = 'Platform'; Count = $PlatformCases.Count }
        @{ Parameter = 'Format'; Count = $FormatCases.Count }
    )
}

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force

    # Script functions carrying the module's completers, so completion is tested whatever cmdlets have landed.
    function Test-OrasPlatform {
        param([ArgumentCompleter([OrasStaging.Commands.Completion.PlatformCompleter])] [string] $Platform)
    }
    function Test-OrasReference {
        param([ArgumentCompleter([OrasStaging.Commands.Completion.ReferenceCompleter])] [string] $Reference)
    }

    function Get-Completion([string] $Line) {
        @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches | ForEach-Object CompletionText)
    }

    function Get-CompleterType($Parameter) {
        $attribute = $Parameter.Attributes | Where-Object { $_ -is [System.Management.Automation.ArgumentCompleterAttribute] } | Select-Object -First 1
        if ($attribute) { $attribute.Type }
    }
}

AfterAll {
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe '-Platform completion' {
    It 'offers the common platforms that match what is typed' {
        Get-Completion 'Test-OrasPlatform -Platform linux/ar' | Should -Be @('linux/arm64', 'linux/arm/v7')
        Get-Completion 'Test-OrasPlatform -Platform ' | Should -Be @('linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/riscv64', 'linux/ppc64le', 'linux/s390x', 'windows/amd64')
        Get-Completion 'Test-OrasPlatform -Platform WIN' | Should -Be @('windows/amd64')
    }

    It 'keeps the quote the user opened' {
        Get-Completion "Test-OrasPlatform -Platform 'linux/s" | Should -Be @("'linux/s390x'")
    }
}

Describe 'The exported cmdlets wire the completers' {
    It 'has cases for -<Parameter> from the built module' -ForEach $CaseCounts {
        $Count | Should -BeGreaterThan 0
    }

    It '<Name> -Reference completes tags (ReferenceCompleter)' -ForEach $ReferenceCases {
        Get-CompleterType (Get-Command $Name).Parameters['Reference'] | Should -Be ([OrasStaging.Commands.Completion.ReferenceCompleter])
    }

    It '<Name> -Platform completes platforms (PlatformCompleter)' -ForEach $PlatformCases {
        Get-CompleterType (Get-Command $Name).Parameters['Platform'] | Should -Be ([OrasStaging.Commands.Completion.PlatformCompleter])
        Get-Completion "$Name -Platform linux/arm/" | Should -Be @('linux/arm/v7')
    }

    It '<Name> -Format is an enum or a ValidateSet, completed by PowerShell itself' -ForEach $FormatCases {
        $parameter = (Get-Command $Name).Parameters['Format']
        $type = [Nullable]::GetUnderlyingType($parameter.ParameterType) ?? $parameter.ParameterType
        $set = $parameter.Attributes | Where-Object { $_ -is [System.Management.Automation.ValidateSetAttribute] }
        # A ValidateSet narrows an enum (Expand-DiskImage takes only the formats it can write), so it wins.
        $values = if ($set) { @($set.ValidValues) } else { [Enum]::GetNames($type) }
        $values | Should -Not -BeNullOrEmpty -Because 'a fixed list of formats must be completable'
        @(Get-Completion "$Name -Format " | Sort-Object) | Should -Be @($values | Sort-Object)
    }
}

Describe '-Reference completion when the registry cannot answer' {
    It 'returns nothing, quietly, for a closed port' {
        $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $listener.Start()
        $port = $listener.LocalEndpoint.Port
        $listener.Stop()
        $Error.Clear()
        Get-Completion "Test-OrasReference -Reference oras://127.0.0.1:$port/lab/debian:" | Should -BeNullOrEmpty
        $Error.Count | Should -Be 0
    }

    It 'gives up within its budget when the registry accepts and never answers' {
        # Bounded, not timed: without the budget this would wait for the HttpClient's own 100 s.
        $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $listener.Start()
        try {
            $port = $listener.LocalEndpoint.Port
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            Get-Completion "Test-OrasReference -Reference oras://127.0.0.1:$port/lab/debian:" | Should -BeNullOrEmpty
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 30
        }
        finally {
            $listener.Stop()
        }
    }

    It 'does not complete a half-typed registry or a pinned digest' {
        Get-Completion 'Test-OrasReference -Reference oras://ghcr.io/' | Should -BeNullOrEmpty
        Get-Completion 'Test-OrasReference -Reference oras://127.0.0.1:1/lab/debian@sha256:' | Should -BeNullOrEmpty
    }
}

Describe '-Reference completion against a real registry (<Auth>)' -ForEach @(
    @{ Auth = 'anonymous' }
    @{ Auth = 'token' }
) {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
        $script:Registry = Start-TestRegistry -Auth $Auth
        $image = New-TestDiskImage -Path (Join-Path $TestDrive "completion-$Auth.img") -Size 1MB -Seed 3
        foreach ($tag in 'latest', 'v1.0', 'v1.1', 'v2.0') {
            $null = Publish-TestImage -Registry $Registry -Repository 'lab/debian' -Tag $tag -ImagePath $image.FullName
        }
        $script:Host_ = $Registry.registry
        if ($Auth -eq 'token') {
            $null = Publish-TestImage -Registry $Registry -Repository $Registry.privateRepository -Tag 'secret' -ImagePath $image.FullName
        }
    }

    AfterAll {
        Stop-TestRegistry $Registry
    }

    It 'lists every tag after the colon' {
        Get-Completion "Test-OrasReference -Reference oras://$Host_/lab/debian:" |
            Should -Be @("'oras://$Host_/lab/debian:latest'", "'oras://$Host_/lab/debian:v1.0'", "'oras://$Host_/lab/debian:v1.1'", "'oras://$Host_/lab/debian:v2.0'")
    }

    It 'filters by the typed tag prefix and keeps the reference as typed (with or without oras://)' {
        Get-Completion "Test-OrasReference -Reference oras://$Host_/lab/debian:v1" |
            Should -Be @("'oras://$Host_/lab/debian:v1.0'", "'oras://$Host_/lab/debian:v1.1'")
        Get-Completion "Test-OrasReference -Reference '$Host_/lab/debian:v2" | Should -Be @("'$Host_/lab/debian:v2.0'")
    }

    It 'offers the tags after the bare repository name' {
        Get-Completion "Test-OrasReference -Reference oras://$Host_/lab/debian" | Should -Contain "'oras://$Host_/lab/debian:latest'"
    }

    It 'returns nothing for an unknown repository' {
        Get-Completion "Test-OrasReference -Reference oras://$Host_/lab/nothing-here:" | Should -BeNullOrEmpty
    }

    if ($Auth -eq 'token') {
        It 'stays anonymous: tags of a private repository are not listed' {
            $Registry.privateRepository | Should -Not -BeNullOrEmpty
            Get-Completion "Test-OrasReference -Reference oras://$Host_/$($Registry.privateRepository):" | Should -BeNullOrEmpty
        }
    }

    It 'completes through <_> -Reference' -ForEach @($ReferenceCases | ForEach-Object Name) {
        Get-Completion "$_ -Reference oras://$Host_/lab/debian:v2" | Should -Be @("'oras://$Host_/lab/debian:v2.0'")
    }
}
