# deps_dry_run: scripts/deps.sh (the set-up behind `make deps`/demo/test/bench) plans the right apt
# packages in faked environments (stub tools on a private PATH, a fake CMF_DEPS_ROOT tree): only what
# is missing, never Debian's npm next to a non-Debian Node.js, one error line when Node.js >= 20
# cannot come from apt. Runs no apt and needs no network.
# Run just this: ctest -R deps_dry_run --output-on-failure   (or: bash tests/deps/dry_run_test.sh)
add_test(NAME deps_dry_run
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/deps/dry_run_test.sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/deps.sh)
set_tests_properties(deps_dry_run PROPERTIES TIMEOUT 300 LABELS "deps")
